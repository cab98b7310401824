use std::process::ExitCode;

use clap::Parser;

/// mimalloc: the engine allocates small, short-lived values per event; see
/// docs/performance.md for the measured difference to the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = tocsin::cli::Cli::parse();
    tocsin::cli::run(cli)
}
