//! The command line: one file per command. Exit codes follow daemon.md
//! section 1; `anyhow` stops here.

mod check;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "tocsin",
    version,
    about = "Complex-event-processing rules daemon"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load and validate rules (and the config when given); print every error.
    Check(check::CheckArgs),
    /// Print version and build information.
    Version,
}

pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Check(args) => check::run(args),
        Command::Version => {
            println!("tocsin {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
    }
}

/// Default rules location when none is given.
pub(crate) fn default_rules() -> PathBuf {
    PathBuf::from("rules")
}
