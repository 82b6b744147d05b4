//! The core API that every front door (JSON-RPC, REST, console, CLI, P2P) calls. It knows
//! nothing of HTTP: a handler extracts its input, calls a method here, and maps the result.

mod intake;
mod outbox;

pub use intake::{AclPolicy, Intake, SubmitError, Submitted};
pub use outbox::{OUTBOX_CAPACITY, Outbox, OutboxReceiver};
