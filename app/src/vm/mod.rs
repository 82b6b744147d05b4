//! The VM executor's building blocks. *Architecture invariant:* this module is the only one
//! that speaks QEMU (command lines, QMP), vsock and VFIO; the rest of the node sends it closed
//! commands and gets typed results.
//!
//! - [`accel`]: KVM or TCG, decided by a capability check and a canary boot.
//! - [`qemu`]: the typed VM spec and the exact QEMU command line it becomes.
//! - [`confine`]: who QEMU runs as and the resource limits around it; [`cgroup`]: cgroup v2
//!   bounds per VM where the node may create cgroups.
//! - [`image`]: how a program image is recognised (raw bootable disk or kernel bundle).
//! - [`runner`]: one QEMU process per VM, driven over QMP with closed commands.
//! - [`executor`]: one task in one VM from staged inputs to a checked outcome.

pub mod accel;
pub mod bundle;
pub mod cgroup;
pub mod confine;
pub mod executor;
pub mod guest_server;
pub mod image;
pub mod outputs;
pub mod qemu;
pub mod runner;
pub mod vsock;
