//! QEMU confined beyond its seccomp sandbox (`qemu.rs`).
//!
//! When the node runs as root, QEMU does not: it runs as an unprivileged user
//! (`GEVULOT_VM_USER`, `gevulot-vm` in the container image), with every capability dropped from
//! its sets and bounding set and `no_new_privs` (util-linux's `setpriv`), so a guest that takes
//! over the emulator holds no privilege and cannot create device nodes or root-owned setuid files
//! in its `/workspace`. The inputs staged there are the guest's own copies (programs may
//! overwrite them, as under the original node): the node's stored content is never linked into
//! a workspace, so nothing a guest does to its inputs reaches it. Its resources are bounded by resource limits
//! (util-linux's `prlimit`): address space (guest memory plus room for QEMU itself, where no GPU
//! maps its memory), CPU time (a backstop behind `GEVULOT_MAX_VM_RUN_TIME`), processes, open
//! files, and no core dumps (they would hold guest memory). `doctor` says which of these apply.
//!
//! A node that does not run as root starts QEMU as itself, under the same limits.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::cgroup::{self, Cgroups};

/// The user QEMU runs as when the node is root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// How QEMU processes are confined.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Confinement {
    /// `None`: QEMU runs as the node's own user.
    pub user: Option<VmUser>,
    /// util-linux's `setpriv` (with `user`).
    pub setpriv: Option<PathBuf>,
    /// util-linux's `prlimit`; `None`: no resource limits (only in tests and benchmarks).
    pub prlimit: Option<PathBuf>,
    /// The node's delegated cgroup v2, when it may create cgroups (`cgroup.rs`).
    pub cgroups: Option<Cgroups>,
    /// Why there are no cgroups, when there are none.
    pub no_cgroups: Option<String>,
}

/// What one VM may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmBounds {
    pub mem_mib: u64,
    pub cpus: u64,
    /// Whether GPUs are passed through (their memory is mapped into QEMU: no address-space
    /// limit then).
    pub gpus: bool,
    pub run_time: Duration,
}

/// Room for QEMU's own mappings beyond guest memory (code, TCG's translation cache, thread
/// stacks, device buffers).
const QEMU_OVERHEAD_MIB: u64 = 4096;
/// Processes and threads of the VM user (QEMU's threads count; spawning is denied by seccomp).
const MAX_PROCESSES: u64 = 4096;
const MAX_OPEN_FILES: u64 = 4096;

impl VmBounds {
    /// The `prlimit` options for one VM.
    pub fn prlimit_args(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.gpus {
            let bytes = (self.mem_mib + QEMU_OVERHEAD_MIB).saturating_mul(1 << 20);
            out.push(format!("--as={bytes}"));
        }
        // CPU seconds: every vCPU busy for the whole run, twice over, and a minute to boot.
        let cpu = self
            .cpus
            .max(1)
            .saturating_mul(self.run_time.as_secs())
            .saturating_mul(2)
            .saturating_add(60);
        out.push(format!("--cpu={cpu}"));
        out.push(format!("--nproc={MAX_PROCESSES}"));
        out.push(format!("--nofile={MAX_OPEN_FILES}"));
        out.push("--core=0".into());
        out
    }
}

impl Confinement {
    /// The program and arguments that start `qemu args` confined for `bounds`.
    pub fn command(
        &self,
        qemu: &Path,
        args: Vec<String>,
        bounds: &VmBounds,
    ) -> (PathBuf, Vec<String>) {
        let mut program = qemu.to_path_buf();
        let mut all = args;
        if let (Some(user), Some(setpriv)) = (&self.user, &self.setpriv) {
            let mut wrapped = vec![
                format!("--reuid={}", user.uid),
                format!("--regid={}", user.gid),
                "--init-groups".into(),
                "--inh-caps=-all".into(),
                "--bounding-set=-all".into(),
                "--no-new-privs".into(),
                "--".into(),
                program.display().to_string(),
            ];
            wrapped.extend(all);
            all = wrapped;
            program = setpriv.clone();
        }
        if let Some(prlimit) = &self.prlimit {
            let mut wrapped = bounds.prlimit_args();
            wrapped.push("--".into());
            wrapped.push(program.display().to_string());
            wrapped.extend(all);
            all = wrapped;
            program = prlimit.clone();
        }
        (program, all)
    }

    /// Hands `path` (a VM's directory or a file QEMU opens itself) to the VM user.
    pub fn hand_over(&self, path: &Path) -> std::io::Result<()> {
        match &self.user {
            Some(u) => std::os::unix::fs::chown(path, Some(u.uid), Some(u.gid)),
            None => Ok(()),
        }
    }

    /// One line for `doctor` and the log: who QEMU runs as and what bounds it.
    pub fn describe(&self) -> String {
        let who = match &self.user {
            Some(u) => format!(
                "QEMU runs as {} (uid {}, gid {}) without capabilities",
                u.name, u.uid, u.gid
            ),
            None => "QEMU runs as the node's own user".to_string(),
        };
        let limits = if self.prlimit.is_some() {
            "under resource limits (address space, CPU time, processes, open files, no core dumps)"
        } else {
            "without resource limits"
        };
        let cgroups = match (&self.cgroups, &self.no_cgroups) {
            (Some(c), _) => format!(
                "in a cgroup v2 of its own under {} (memory, pids, cpu)",
                c.root().display()
            ),
            (None, Some(why)) => format!("without cgroups ({why})"),
            (None, None) => "without cgroups".into(),
        };
        format!("{who}, {limits}, {cgroups}, inside its seccomp sandbox")
    }
}

/// Whether `user` may walk into `path` (search permission on it and on every directory above).
pub fn reachable(user: &VmUser, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    path.ancestors().all(|dir| {
        std::fs::metadata(dir).is_ok_and(|m| {
            let mode = m.mode();
            (m.uid() == user.uid && mode & 0o100 != 0)
                || (m.gid() == user.gid && mode & 0o010 != 0)
                || mode & 0o001 != 0
        })
    })
}

/// The confinement for a node running as `node_uid`, with the VM user named `vm_user` looked up
/// in `<root>/etc/passwd`, and the directories QEMU must reach (`dirs`: the VMs' and their
/// console logs'). `data` (the node's own data directory) is made searchable, never readable, by
/// others when the VM user could not reach it. An error says why QEMU cannot be confined (VMs
/// do not start then).
pub fn resolve(
    root: &Path,
    node_uid: u32,
    vm_user: &str,
    data: &Path,
    dirs: &[&Path],
) -> Result<Confinement, String> {
    let prlimit = crate::doctor::find_program(Path::new("prlimit"));
    let (cgroups, no_cgroups) =
        match Cgroups::delegate(&root.join("sys/fs/cgroup"), root, std::process::id()) {
            Ok(c) => (Some(c), None),
            Err(why) => (None, Some(why)),
        };
    if node_uid != 0 || vm_user == "root" {
        return Ok(Confinement {
            user: None,
            setpriv: None,
            prlimit,
            cgroups,
            no_cgroups,
        });
    }
    let Some(identity) = crate::doctor::Identity::lookup(root, vm_user) else {
        return Err(format!(
            "the node runs as root and GEVULOT_VM_USER {vm_user:?} does not exist: create it \
             (`useradd --system --user-group --no-create-home --shell /usr/sbin/nologin {vm_user}`) \
             or name another unprivileged user; QEMU never runs as root unless GEVULOT_VM_USER=root"
        ));
    };
    let user = VmUser {
        name: vm_user.to_string(),
        uid: identity.uid,
        gid: identity.gids.first().copied().unwrap_or(identity.uid),
    };
    if user.uid == 0 {
        return Err(format!(
            "GEVULOT_VM_USER {vm_user:?} is root: name an unprivileged user"
        ));
    }
    let Some(setpriv) = crate::doctor::find_program(Path::new("setpriv")) else {
        return Err("setpriv (util-linux) is missing: install util-linux; QEMU is started through it to drop root".into());
    };
    let Some(prlimit) = prlimit else {
        return Err("prlimit (util-linux) is missing: install util-linux; QEMU is started through it under resource limits".into());
    };
    if !reachable(&user, data) {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(data)
            .map_err(|e| e.to_string())?
            .permissions()
            .mode();
        std::fs::set_permissions(data, std::fs::Permissions::from_mode(mode | 0o001)).map_err(
            |e| {
                format!(
                    "cannot make {} searchable for {vm_user}: {e}",
                    data.display()
                )
            },
        )?;
    }
    for dir in dirs {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        if !reachable(&user, dir) {
            return Err(format!(
                "{vm_user} cannot reach {}: give every directory above it search permission \
                 for others (chmod o+x), or keep the data and log directories where it can",
                dir.display()
            ));
        }
    }
    Ok(Confinement {
        user: Some(user),
        setpriv: Some(setpriv),
        prlimit: Some(prlimit),
        cgroups,
        no_cgroups,
    })
}

/// `doctor`'s line: who QEMU runs as for a node running as `node`, and what bounds it
/// (resource limits: the node does not create cgroups).
pub fn check(root: &Path, node: &crate::doctor::Identity, vm_user: &str) -> crate::doctor::Check {
    use crate::doctor::{Check, Status};
    let line = |status, detail: String, fix: Option<&str>| Check {
        name: "confinement".into(),
        status,
        detail,
        fix: fix.map(str::to_string),
    };
    let tools = ["setpriv", "prlimit"]
        .into_iter()
        .filter(|t| crate::doctor::find_program(Path::new(t)).is_none())
        .collect::<Vec<_>>();
    let limits = match cgroup::probe(&root.join("sys/fs/cgroup"), root) {
        Ok(dir) => format!(
            "under resource limits (address space, CPU time, processes, open files, no core \
             dumps) and in a cgroup v2 of its own under {} (memory, pids, cpu)",
            dir.display()
        ),
        Err(why) => format!(
            "under resource limits (address space, CPU time, processes, open files, no core \
             dumps; rlimits apply, no cgroups: {why})"
        ),
    };
    if node.uid != 0 {
        return match tools.contains(&"prlimit") {
            false => line(
                Status::Pass,
                format!("QEMU runs as {} (the node's user), {limits}", node.name),
                None,
            ),
            true => line(
                Status::Warn,
                format!(
                    "QEMU runs as {} without resource limits: prlimit is missing",
                    node.name
                ),
                Some("install util-linux"),
            ),
        };
    }
    if vm_user == "root" {
        return line(
            Status::Warn,
            "QEMU runs as root (GEVULOT_VM_USER=root)".into(),
            Some(
                "useradd --system --user-group --no-create-home --shell /usr/sbin/nologin gevulot-vm, and unset GEVULOT_VM_USER",
            ),
        );
    }
    let Some(user) = crate::doctor::Identity::lookup(root, vm_user).filter(|u| u.uid != 0) else {
        return line(
            Status::Fail,
            format!(
                "the node runs as root and GEVULOT_VM_USER {vm_user:?} is not an unprivileged user here: no VM starts"
            ),
            Some(&format!(
                "useradd --system --user-group --no-create-home --shell /usr/sbin/nologin {vm_user}"
            )),
        );
    };
    if !tools.is_empty() {
        return line(
            Status::Fail,
            format!(
                "{} missing: QEMU cannot be started as {vm_user}: no VM starts",
                tools.join(" and ")
            ),
            Some("install util-linux"),
        );
    }
    line(
        Status::Pass,
        format!(
            "QEMU runs as {vm_user} (uid {}) without capabilities, {limits}",
            user.uid
        ),
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds(gpus: bool) -> VmBounds {
        VmBounds {
            mem_mib: 512,
            cpus: 2,
            gpus,
            run_time: Duration::from_secs(100),
        }
    }

    #[test]
    fn as_the_node_without_limits_it_is_qemu_itself() {
        let (program, args) =
            Confinement::default().command(Path::new("/q"), vec!["-x".into()], &bounds(false));
        assert_eq!(program, Path::new("/q"));
        assert_eq!(args, ["-x"]);
    }

    #[test]
    fn a_root_node_drops_to_the_vm_user_under_limits() {
        let c = Confinement {
            user: Some(VmUser {
                name: "gevulot-vm".into(),
                uid: 990,
                gid: 985,
            }),
            setpriv: Some("/usr/bin/setpriv".into()),
            prlimit: Some("/usr/bin/prlimit".into()),
            ..Confinement::default()
        };
        let (program, args) = c.command(Path::new("/q"), vec!["-x".into()], &bounds(false));
        assert_eq!(program, Path::new("/usr/bin/prlimit"));
        assert_eq!(
            args.join(" "),
            format!(
                "--as={} --cpu=460 --nproc=4096 --nofile=4096 --core=0 -- /usr/bin/setpriv \
                 --reuid=990 --regid=985 --init-groups --inh-caps=-all --bounding-set=-all \
                 --no-new-privs -- /q -x",
                (512u64 + 4096) << 20
            )
        );
        // GPUs map their memory into QEMU: no address-space limit then.
        let (_, args) = c.command(Path::new("/q"), vec![], &bounds(true));
        assert!(!args.iter().any(|a| a.starts_with("--as=")), "{args:?}");
        assert!(
            c.describe().contains("gevulot-vm (uid 990"),
            "{}",
            c.describe()
        );
    }

    #[test]
    fn doctor_says_who_qemu_runs_as_and_what_bounds_it() {
        use crate::doctor::{Identity, Status};
        let root = tempfile::tempdir().expect("tmp");
        std::fs::create_dir_all(root.path().join("etc")).expect("etc");
        std::fs::write(
            root.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\ngevulot-vm:x:990:985::/:/usr/sbin/nologin\n",
        )
        .expect("passwd");
        let node = |uid| Identity {
            name: if uid == 0 {
                "root".into()
            } else {
                "gevulot".into()
            },
            uid,
            gids: vec![uid],
        };
        let as_root = check(root.path(), &node(0), "gevulot-vm");
        assert_eq!(as_root.status, Status::Pass, "{as_root:?}");
        assert!(
            as_root.detail.contains("gevulot-vm (uid 990)")
                && as_root.detail.contains("rlimits apply")
        );
        let missing = check(root.path(), &node(0), "someone");
        assert_eq!(missing.status, Status::Fail);
        assert!(
            missing
                .fix
                .as_deref()
                .is_some_and(|f| f.contains("useradd")),
            "{missing:?}"
        );
        assert_eq!(check(root.path(), &node(0), "root").status, Status::Warn);
        let unprivileged = check(root.path(), &node(1000), "gevulot-vm");
        assert_eq!(unprivileged.status, Status::Pass);
        assert!(
            unprivileged.detail.contains("the node's user"),
            "{unprivileged:?}"
        );
    }
}
