//! Logging: `tracing` to standard error, filtered by `RUST_LOG` as in the original
//! (e.g. `RUST_LOG=warn,gevulot=debug,sqlx=error`); the default level is `info`.
//!
//! The binary's own events are emitted under the `gevulot` target (not the crate names), so the
//! original's filters keep working.

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only on a terminal, and never with NO_COLOR (journald and files get plain text).
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .with_target(true)
        .try_init();
}
