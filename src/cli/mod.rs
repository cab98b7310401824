//! The command line: one file per command. Exit codes follow daemon.md
//! section 1; `anyhow` stops here.

mod check;
mod replay;
mod test;

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
    /// Evaluate rules over NDJSON events offline; alerts on stdout.
    Replay(replay::ReplayArgs),
    /// Run rule unit tests (YAML files of events and expected alerts).
    Test(test::TestArgs),
    /// Print version and build information.
    Version,
}

pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Check(args) => check::run(args),
        Command::Replay(args) => replay::run(args),
        Command::Test(args) => test::run(args),
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

/// The `events` settings of a config file (decoding and `max_delay`), or
/// the defaults without one.
pub(crate) fn events_config(
    path: Option<&std::path::Path>,
) -> anyhow::Result<(crate::decode::DecodeConfig, Option<i64>)> {
    match path {
        None => Ok((crate::decode::DecodeConfig::default(), None)),
        Some(p) => {
            let cfg = crate::config::Config::load(p)?;
            Ok((cfg.events.decode_config(), Some(cfg.events.max_delay.0)))
        }
    }
}
