//! What runs inside a program's VM.
//!
//! - [`proto`]: the guest protocol (`vm_service.VMService` over vsock), shared with the node.
//!
//! The program SDK, the guest agent and the test programs build on it.

pub mod proto;
