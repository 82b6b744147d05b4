//! The `gevulot` binary: the node and its operator commands.

mod backup;
mod commands;
mod config;
mod http;
mod logging;
mod node;
mod setup;

use std::process::ExitCode;

/// mimalloc instead of the C library's allocator: serving a request allocates and frees many
/// small buffers on several threads, where glibc's malloc spent about a tenth of the node's CPU
/// under load (see the HTTP benchmark).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = config::Cli::from_env();
    logging::init(&cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::dispatch(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` prints the whole chain of causes on one line: what failed and why.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
