//! `tocsin check [-c FILE] [RULES...]`: 0 valid, 1 invalid, 2 usage error.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};

use crate::lang::{self, Options};

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Configuration file; its channels are checked against `notify`.
    #[arg(short, long)]
    pub config: Option<PathBuf>,
    /// Output format of the diagnostics.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Rule files or directories of `*.rules` (default: the config's `rules`, else `rules/`).
    pub rules: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

pub fn run(args: CheckArgs) -> ExitCode {
    let mut opts = Options::default();
    let mut config_rules = None;
    if let Some(path) = &args.config {
        match crate::config::Config::load(path) {
            Ok(cfg) => {
                opts.channels = Some(cfg.channel_names());
                config_rules = Some(cfg.rules.clone());
            }
            Err(e) => {
                println!("{e}");
                eprintln!("1 error(s) in the configuration");
                return ExitCode::FAILURE;
            }
        }
    }
    let locations = if !args.rules.is_empty() {
        args.rules.clone()
    } else if let Some(r) = config_rules {
        vec![r]
    } else {
        vec![super::default_rules()]
    };
    let loaded = match lang::load_locations(&locations, &opts) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot read rules: {e}");
            return ExitCode::from(2);
        }
    };
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Text => {
            let _ = write!(out, "{}", loaded.render());
        }
        Format::Json => {
            let all: Vec<_> = loaded
                .diagnostics
                .iter()
                .map(|d| d.to_json(&loaded.sources))
                .collect();
            let _ = writeln!(out, "{}", serde_json::Value::Array(all));
        }
    }
    let errors = loaded.diagnostics.iter().filter(|d| d.is_error()).count();
    let warnings = loaded.diagnostics.len() - errors;
    if errors > 0 {
        eprintln!("{errors} error(s), {warnings} warning(s)");
        ExitCode::FAILURE
    } else {
        eprintln!(
            "{} rule(s) OK{}",
            loaded.program.rules.len(),
            if warnings > 0 {
                format!(", {warnings} warning(s)")
            } else {
                String::new()
            }
        );
        ExitCode::SUCCESS
    }
}
