use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = tocsin::cli::Cli::parse();
    tocsin::cli::run(cli)
}
