//! What runs inside a program's VM.
//!
//! - [`proto`]: the guest protocol (`vm_service.VMService` over vsock), shared with the node.
//!
//! - [`sdk`]: the program SDK (`run(callback)`), with the original's shape.
//!
//! Binaries: `gevulot-agent` (the VM's `/init`), `test-prover` and `test-verifier`.

pub mod proto;
pub mod sdk;
