//! The guest agent: `/init` of a kernel-bundle VM. Mounts `/proc`, `/sys`, `/dev`, loads the
//! virtio, vsock and 9p modules listed in `/modules.list` (from `/lib/modules/`), mounts the
//! node's share at `/workspace` (9p, `mount_tag=0`), runs the program named on the kernel command
//! line (`gevulot.program=/bin/…`), and powers the VM off when it ends.

use std::ffi::CString;
use std::path::Path;

use nix::mount::{MsFlags, mount};

fn log(message: &str) {
    // The console is the serial port, which the node keeps as the VM's log.
    println!("gevulot-agent: {message}");
}

fn mount_fs(source: &str, target: &str, fstype: &str, data: Option<&str>) {
    let _ = std::fs::create_dir_all(target);
    if let Err(e) = mount(Some(source), target, Some(fstype), MsFlags::empty(), data) {
        log(&format!("cannot mount {fstype} on {target}: {e}"));
    }
}

fn load_modules() {
    let Ok(list) = std::fs::read_to_string("/modules.list") else {
        return;
    };
    for name in list.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let path = Path::new("/lib/modules").join(name);
        match std::fs::File::open(&path) {
            Ok(file) => {
                let params = CString::default();
                if let Err(e) =
                    nix::kmod::finit_module(&file, &params, nix::kmod::ModuleInitFlags::empty())
                {
                    // EEXIST: built in or already loaded.
                    if e != nix::errno::Errno::EEXIST {
                        log(&format!("cannot load {name}: {e}"));
                    }
                }
            }
            Err(e) => log(&format!("cannot open {}: {e}", path.display())),
        }
    }
}

fn program() -> Option<String> {
    let cmdline = std::fs::read_to_string("/proc/cmdline").ok()?;
    cmdline
        .split_whitespace()
        .find_map(|arg| arg.strip_prefix("gevulot.program=").map(str::to_string))
}

fn power_off() -> ! {
    nix::unistd::sync();
    let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF);
    loop {
        std::thread::park();
    }
}

fn main() {
    mount_fs("proc", "/proc", "proc", None);
    mount_fs("sysfs", "/sys", "sysfs", None);
    mount_fs("devtmpfs", "/dev", "devtmpfs", None);
    load_modules();
    mount_fs(
        "0",
        "/workspace",
        "9p",
        Some("trans=virtio,version=9p2000.L,msize=262144"),
    );
    match program() {
        Some(path) => {
            log(&format!("running {path}"));
            match std::process::Command::new(&path).status() {
                Ok(status) => log(&format!("{path} ended: {status}")),
                Err(e) => log(&format!("cannot run {path}: {e}")),
            }
        }
        None => log("no gevulot.program= on the kernel command line"),
    }
    power_off();
}
