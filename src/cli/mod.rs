//! The command line: one file per command. Exit codes follow daemon.md
//! section 1; `anyhow` stops here.

mod check;
mod completions;
mod replay;
mod run;
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
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon.
    Run(run::RunArgs),
    /// Load and validate rules (and the config when given); print every error.
    Check(check::CheckArgs),
    /// Evaluate rules over NDJSON events offline; alerts on stdout.
    Replay(replay::ReplayArgs),
    /// Run rule unit tests (YAML files of events and expected alerts).
    Test(test::TestArgs),
    /// Print version and build information.
    Version,
    /// Print a shell completion script (bash, zsh, fish, ...).
    Completions(completions::CompletionsArgs),
    /// Print the man page (roff), or write one page per command with --dir.
    Manpage(completions::ManpageArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Logs go to stderr; `RUST_LOG` filters them (default `info`).
pub fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

pub fn run(cli: Cli) -> ExitCode {
    init_tracing(cli.log_format);
    match cli.command {
        Command::Run(args) => run::run(args),
        Command::Check(args) => check::run(args),
        Command::Replay(args) => replay::run(args),
        Command::Test(args) => test::run(args),
        Command::Completions(args) => completions::completions(args),
        Command::Manpage(args) => completions::manpage(args),
        Command::Version => {
            print!("{}", version_text());
            ExitCode::SUCCESS
        }
    }
}

/// `tocsin version`: the version, then the build (set by build.rs).
fn version_text() -> String {
    format!(
        "tocsin {}\ncommit: {}\ntarget: {}\nprofile: {}\ncompiler: {}\n",
        env!("CARGO_PKG_VERSION"),
        env!("TOCSIN_COMMIT"),
        env!("TOCSIN_TARGET"),
        env!("TOCSIN_PROFILE"),
        env!("TOCSIN_RUSTC"),
    )
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

#[cfg(test)]
mod tests {
    #[test]
    fn version_names_the_build() {
        let v = super::version_text();
        let lines: Vec<&str> = v.lines().collect();
        assert_eq!(lines[0], concat!("tocsin ", env!("CARGO_PKG_VERSION")));
        for (line, label) in lines[1..]
            .iter()
            .zip(["commit", "target", "profile", "compiler"])
        {
            let value = line.strip_prefix(&format!("{label}: ")).unwrap_or_default();
            assert!(
                !value.is_empty() && value != "unknown" || label == "commit",
                "{v}"
            );
        }
        assert!(v.contains("rustc "), "{v}");
        assert!(v.contains(std::env::consts::ARCH), "{v}");
    }
}
