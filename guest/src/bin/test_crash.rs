//! A test program that crashes the guest kernel (sysrq `c`), to show that a panicking guest ends
//! its task as failed with the reason.

fn main() {
    let _ = std::fs::write("/proc/sysrq-trigger", b"c");
    // Without sysrq support the program still ends without a result.
    std::process::exit(2);
}
