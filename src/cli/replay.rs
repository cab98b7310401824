//! `tocsin replay --rules PATH [-c FILE] [--max-delay DUR] [EVENTS...]`:
//! offline evaluation. Alerts as NDJSON on stdout in the order produced;
//! rejected lines and a summary on stderr. Exit 0, or 1 on unreadable
//! rules or input.

use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::alert::Alert;
use crate::decode::{Decoded, Decoder};
use crate::lang::{self, Options};
use crate::pipeline::Pipeline;

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Rule file or directory of `*.rules`.
    #[arg(long)]
    pub rules: PathBuf,
    /// Configuration file (its `events` settings apply).
    #[arg(short, long)]
    pub config: Option<PathBuf>,
    /// How far out of order events may arrive (default 0s in replay).
    #[arg(long, value_name = "DUR")]
    pub max_delay: Option<String>,
    /// Do not print the summary on stderr.
    #[arg(short, long)]
    pub quiet: bool,
    /// NDJSON event files; stdin when none or `-`.
    pub events: Vec<PathBuf>,
}

/// Counts for the summary line.
#[derive(Debug, Default)]
pub(crate) struct Summary {
    pub read: u64,
    pub rejected: u64,
    pub late: u64,
    pub alerts: u64,
}

pub fn run(args: ReplayArgs) -> ExitCode {
    match replay(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn replay(args: &ReplayArgs) -> Result<()> {
    let (decode_cfg, cfg_delay) = super::events_config(args.config.as_deref())?;
    let max_delay = match &args.max_delay {
        Some(d) => lang::duration_ms(d)
            .map_err(anyhow::Error::msg)
            .context("--max-delay")?,
        None => cfg_delay.unwrap_or(0),
    };
    let loaded = lang::load(&args.rules, &Options::default())
        .with_context(|| format!("cannot read rules {}", args.rules.display()))?;
    if loaded.has_errors() {
        eprint!("{}", loaded.render());
        bail!("the rules in {} are invalid", args.rules.display());
    }
    let mut pipeline = Pipeline::new(&loaded.program, max_delay);
    let decoder = Decoder::new(decode_cfg);
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut summary = Summary::default();
    let mut alerts = Vec::new();
    let inputs: Vec<PathBuf> = if args.events.is_empty() {
        vec![PathBuf::from("-")]
    } else {
        args.events.clone()
    };
    for input in &inputs {
        let name = input.display().to_string();
        let reader: Box<dyn Read> = if name == "-" {
            Box::new(std::io::stdin().lock())
        } else {
            Box::new(std::fs::File::open(input).with_context(|| format!("cannot open {name}"))?)
        };
        let mut reader = BufReader::with_capacity(1 << 16, reader);
        let mut line = Vec::with_capacity(1024);
        let mut lineno = 0u64;
        loop {
            line.clear();
            let n = reader
                .read_until(b'\n', &mut line)
                .with_context(|| format!("cannot read {name}"))?;
            if n == 0 {
                break;
            }
            lineno += 1;
            feed(
                &decoder,
                &mut pipeline,
                &line,
                &mut alerts,
                &mut summary,
                |reason| eprintln!("{name}:{lineno}: rejected: {reason}"),
            );
            write_alerts(&mut out, &mut alerts, &mut summary)?;
        }
    }
    pipeline.finish(&mut alerts);
    write_alerts(&mut out, &mut alerts, &mut summary)?;
    out.flush()?;
    summary.late = pipeline.late();
    if !args.quiet {
        eprintln!(
            "replay: {} events read, {} rejected, {} late, {} alerts",
            summary.read, summary.rejected, summary.late, summary.alerts
        );
    }
    Ok(())
}

/// Decodes one line and offers it to the pipeline.
pub(crate) fn feed(
    decoder: &Decoder,
    pipeline: &mut Pipeline,
    line: &[u8],
    alerts: &mut Vec<Alert>,
    summary: &mut Summary,
    on_reject: impl FnOnce(&str),
) {
    match decoder.decode(line, None) {
        Decoded::Blank => {}
        Decoded::Rejected(reason) => {
            summary.rejected += 1;
            on_reject(reason.as_str());
        }
        Decoded::Event(ev) => {
            summary.read += 1;
            // A late event is counted by the pipeline and otherwise ignored.
            let _ = pipeline.push(ev, alerts);
        }
    }
}

fn write_alerts(
    out: &mut impl Write,
    alerts: &mut Vec<Alert>,
    summary: &mut Summary,
) -> Result<()> {
    for a in alerts.drain(..) {
        summary.alerts += 1;
        out.write_all(a.to_json().as_bytes())?;
        out.write_all(b"\n")?;
    }
    Ok(())
}
