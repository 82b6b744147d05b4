//! Who QEMU runs as when the node runs as root (`app::vm::confine`).

use clap::Args;

#[derive(Args, Debug, Clone)]
pub struct ConfineArgs {
    /// The unprivileged user QEMU runs as when the node runs as root (without capabilities,
    /// under resource limits); `root` keeps QEMU as root (not recommended). A node that does not
    /// run as root starts QEMU as itself.
    #[arg(long, env = "GEVULOT_VM_USER", default_value = "gevulot-vm")]
    pub vm_user: String,
}
