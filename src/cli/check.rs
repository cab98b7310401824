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
    // Kafka sources that declare `partitioned_by`: (group, fields).
    let mut kafka = Vec::new();
    if let Some(path) = &args.config {
        match crate::config::Config::load(path) {
            Ok(cfg) => {
                opts.channels = Some(cfg.channel_names());
                config_rules = Some(cfg.rules.clone());
                for src in &cfg.sources {
                    if let crate::config::SourceConfig::Kafka {
                        group,
                        partitioned_by,
                        ..
                    } = src
                        && !partitioned_by.is_empty()
                    {
                        kafka.push((group.clone(), partitioned_by.clone()));
                    }
                }
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
    // A location that does not exist is an error of its own; the others
    // are still checked, so that one run reports every error.
    let (locations, missing): (Vec<_>, Vec<_>) = locations.into_iter().partition(|l| l.exists());
    let missing: Vec<String> = missing
        .iter()
        .map(|l| {
            format!(
                "cannot read rules: {}: no such file or directory",
                l.display()
            )
        })
        .collect();
    let loaded = match lang::load_locations(&locations, &opts) {
        Ok(l) => l,
        Err(e) => {
            // Invalid input like a config that cannot be read (1), not a
            // mistake in the command line (2); `replay` says 1 too.
            eprintln!("error: cannot read rules: {e}");
            return ExitCode::FAILURE;
        }
    };
    let repartitioned = kafka_warnings(&loaded.program, &kafka);
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Text => {
            for m in &missing {
                let _ = writeln!(out, "error: {m}");
            }
            let _ = write!(out, "{}", loaded.render());
            for w in &repartitioned {
                let _ = writeln!(out, "{}:{}: warning: {}", w.file, w.line, w.message);
            }
        }
        Format::Json => {
            let all: Vec<_> = loaded
                .diagnostics
                .iter()
                .map(|d| d.to_json(&loaded.sources))
                .chain(repartitioned.iter().map(|w| {
                    serde_json::json!({
                        "file": w.file,
                        "line": w.line,
                        "column": 1,
                        "end_line": w.line,
                        "end_column": 1,
                        "severity": "warning",
                        "message": w.message,
                        "hint": null,
                    })
                }))
                .chain(missing.iter().map(|m| {
                    serde_json::json!({
                        "file": null,
                        "line": null,
                        "column": null,
                        "end_line": null,
                        "end_column": null,
                        "severity": "error",
                        "message": m,
                        "hint": null,
                    })
                }))
                .collect();
            let _ = writeln!(out, "{}", serde_json::Value::Array(all));
        }
    }
    let rule_errors = loaded.diagnostics.iter().filter(|d| d.is_error()).count();
    let warnings = loaded.diagnostics.len() - rule_errors + repartitioned.len();
    let errors = rule_errors + missing.len();
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

/// A rule a Kafka source will repartition.
struct KafkaWarning {
    file: String,
    line: usize,
    message: String,
}

/// With a kafka source that sets `partitioned_by`, every rule whose key is
/// not that field (docs/scale-out.md, "Repartitioning").
fn kafka_warnings(program: &lang::Program, kafka: &[(String, Vec<String>)]) -> Vec<KafkaWarning> {
    let mut out = Vec::new();
    for (group, fields) in kafka {
        let plan = crate::kafka::route::Plan::new(program, fields, group);
        for g in &plan.groups {
            for r in &g.program.rules {
                out.push(KafkaWarning {
                    file: r.file.clone(),
                    line: r.line,
                    message: if g.is_global() {
                        format!(
                            "rule `{}` has no key: kafka group `{group}` will repartition it through the single-partition topic `{}` (one shard sees every event)",
                            r.name, g.topic
                        )
                    } else {
                        format!(
                            "rule `{}` is keyed on `{}`, not on partitioned_by [{}]: kafka group `{group}` will repartition it through topic `{}`",
                            r.name,
                            g.names.join(", "),
                            fields.join(", "),
                            g.topic
                        )
                    },
                });
            }
        }
    }
    out.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    out
}
