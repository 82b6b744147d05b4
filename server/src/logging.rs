//! Logging: `tracing` to standard error, filtered by `RUST_LOG` as in the original
//! (e.g. `RUST_LOG=warn,gevulot=debug,sqlx=error`); the default level is `info`.
//!
//! The binary's own events are emitted under the `gevulot` target (not the crate names), so the
//! original's filters keep working.
//!
//! `GEVULOT_LOG_FORMAT=json` writes one JSON object per line instead: `timestamp`, `level`,
//! `target`, the event's fields flattened (`message`, `tx`, `run`, `task`, …) and the fields of the
//! spans it happened in (`request_id` of the HTTP request) under `span` and `spans`.

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

/// Installs the subscriber; `format` is `text` or `json` (clap allows nothing else).
pub fn init(format: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(true);
    let _ = if format == "json" {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .try_init()
    } else {
        // Colours only on a terminal, and never with NO_COLOR (journald and files get plain text).
        let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        builder.with_ansi(ansi).try_init()
    };
}
