//! `tocsin replay --rules PATH [-c FILE] [--max-delay DUR] [EVENTS...]`:
//! offline evaluation. Alerts as NDJSON on stdout in the order produced;
//! rejected lines and a summary on stderr. Exit 0, or 1 on unreadable
//! rules or input. When stderr is a terminal (and without `--quiet`) a
//! progress bar shows bytes and events read, events/s, alerts so far and,
//! when the input size is known, the ETA; it is cleared before the summary.

use std::io::{BufRead, BufReader, BufWriter, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::{HumanCount, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

use crate::alert::Alert;
use crate::decode::{Decoded, Decoder};
use crate::lang::{self, Options};
use crate::pipeline::{Pipeline, Sink};

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
    /// Print neither the summary nor the progress bar on stderr.
    #[arg(short, long)]
    pub quiet: bool,
    /// Threads to share the rules out among (the alerts and their order
    /// are the same for any number).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub threads: u16,
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
    let threads = usize::from(args.threads);
    let mut pipeline = Pipeline::with_parts(&loaded.program, max_delay, threads, threads > 1);
    // With several parts, events are offered in batches and evaluated
    // once per batch, so that the threads share real work (the alerts are
    // those of evaluating event by event).
    let batch = if pipeline.parts() > 1 {
        REPLAY_BATCH
    } else {
        1
    };
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
    let mut progress = Progress::new(
        progress_wanted(args.quiet, std::io::stderr().is_terminal()),
        total_size(&inputs),
    );
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
                batch,
                &mut alerts,
                &mut summary,
                |reason| progress.suspend(|| eprintln!("{name}:{lineno}: rejected: {reason}")),
            );
            write_alerts(&mut out, &mut alerts, &mut summary)?;
            progress.advance(n as u64, &summary);
        }
    }
    // The end of input can fire every pending timer at once: write each
    // alert as it comes rather than collecting them.
    let mut failed = None;
    pipeline.finish(&mut Sink(|a: Alert| {
        if failed.is_none() {
            failed = write_alert(&mut out, &a, &mut summary).err();
        }
    }));
    if let Some(e) = failed {
        return Err(e.into());
    }
    out.flush()?;
    progress.finish();
    summary.late = pipeline.late();
    if !args.quiet {
        eprintln!(
            "replay: {} events read, {} rejected, {} late, {} alerts",
            summary.read, summary.rejected, summary.late, summary.alerts
        );
    }
    Ok(())
}

/// Whether `replay` draws a progress bar: only when stderr is a terminal,
/// and never with `--quiet`. A pipe or a file gets the summary alone.
pub(crate) fn progress_wanted(quiet: bool, stderr_is_terminal: bool) -> bool {
    !quiet && stderr_is_terminal
}

/// The total size of the inputs when every one is a regular file (stdin
/// included, when it is redirected from one); `None` otherwise (a pipe, a
/// FIFO, a terminal), and then the bar has no length and no ETA.
fn total_size(inputs: &[PathBuf]) -> Option<u64> {
    let mut total = 0u64;
    for input in inputs {
        let meta = if input.as_path() == Path::new("-") {
            stdin_metadata()?
        } else {
            std::fs::metadata(input).ok()?
        };
        if !meta.is_file() {
            return None;
        }
        total = total.saturating_add(meta.len());
    }
    Some(total)
}

#[cfg(unix)]
fn stdin_metadata() -> Option<std::fs::Metadata> {
    use std::os::fd::AsFd;
    let fd = std::io::stdin().as_fd().try_clone_to_owned().ok()?;
    std::fs::File::from(fd).metadata().ok()
}

#[cfg(not(unix))]
fn stdin_metadata() -> Option<std::fs::Metadata> {
    None
}

/// The progress bar of a replay, or nothing. Its position is bytes read;
/// events and alerts are shared counters that the template reads at draw
/// time, so a line costs a few atomic stores and no formatting.
struct Progress {
    bar: Option<ProgressBar>,
    events: Arc<AtomicU64>,
    alerts: Arc<AtomicU64>,
    bytes: u64,
}

impl Progress {
    fn new(enabled: bool, total: Option<u64>) -> Self {
        let events = Arc::new(AtomicU64::new(0));
        let alerts = Arc::new(AtomicU64::new(0));
        let bar = enabled.then(|| {
            let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
            bar.set_style(progress_style(total.is_some(), &events, &alerts));
            // Redraws (elapsed time, spinner) while input is slow to come.
            bar.enable_steady_tick(Duration::from_millis(200));
            bar.tick();
            bar
        });
        Progress {
            bar,
            events,
            alerts,
            bytes: 0,
        }
    }

    /// One line of `n` bytes has been read and its alerts written.
    fn advance(&mut self, n: u64, summary: &Summary) {
        if let Some(bar) = &self.bar {
            self.bytes += n;
            self.events.store(summary.read, Ordering::Relaxed);
            self.alerts.store(summary.alerts, Ordering::Relaxed);
            bar.set_position(self.bytes);
        }
    }

    /// Runs `f` (which writes to stderr) with the bar out of the way.
    fn suspend(&self, f: impl FnOnce()) {
        match &self.bar {
            Some(bar) => bar.suspend(f),
            None => f(),
        }
    }

    /// Clears the bar; the summary line follows.
    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

fn progress_style(sized: bool, events: &Arc<AtomicU64>, alerts: &Arc<AtomicU64>) -> ProgressStyle {
    // Fits 80 columns: the bar takes what the counts leave.
    let template = if sized {
        "{spinner:.green} [{wide_bar:.cyan/blue}] {bytes}/{total_bytes}  \
         {events} events ({rate}/s)  {alerts} alerts  ETA {eta}"
    } else {
        "{spinner:.green} {elapsed_precise} {bytes} read  \
         {events} events ({rate}/s)  {alerts} alerts"
    };
    let (ev, ev_rate, al) = (events.clone(), events.clone(), alerts.clone());
    ProgressStyle::with_template(template)
        .expect("a valid progress template")
        .progress_chars("=> ")
        .with_key(
            "events",
            move |_: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{}", HumanCount(ev.load(Ordering::Relaxed)));
            },
        )
        .with_key(
            "rate",
            move |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                let secs = s.elapsed().as_secs_f64();
                let n = ev_rate.load(Ordering::Relaxed) as f64;
                let rate = if secs > 0.0 { n / secs } else { 0.0 };
                let _ = write!(w, "{}", HumanCount(rate.round() as u64));
            },
        )
        .with_key(
            "alerts",
            move |_: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{}", HumanCount(al.load(Ordering::Relaxed)));
            },
        )
}

/// Decodes one line and offers it to the pipeline.
/// Events offered between evaluations when the rules run in several parts.
const REPLAY_BATCH: usize = 1024;

/// Decodes one line and offers its event; evaluates what is due once
/// `batch` events have been offered since the last evaluation.
pub(crate) fn feed(
    decoder: &Decoder,
    pipeline: &mut Pipeline,
    line: &[u8],
    batch: usize,
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
            let _ = pipeline.offer(ev, None);
            if summary.read.is_multiple_of(batch as u64) {
                pipeline.drain(alerts);
            }
        }
    }
}

fn write_alerts(
    out: &mut impl Write,
    alerts: &mut Vec<Alert>,
    summary: &mut Summary,
) -> Result<()> {
    for a in alerts.drain(..) {
        write_alert(out, &a, summary)?;
    }
    Ok(())
}

/// One alert as one NDJSON line, counted.
fn write_alert(out: &mut impl Write, a: &Alert, summary: &mut Summary) -> std::io::Result<()> {
    summary.alerts += 1;
    out.write_all(a.to_json().as_bytes())?;
    out.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_only_on_a_terminal_and_not_quiet() {
        assert!(progress_wanted(false, true));
        assert!(!progress_wanted(true, true));
        assert!(!progress_wanted(false, false));
        assert!(!progress_wanted(true, false));
    }

    #[test]
    fn total_size_of_regular_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.ndjson");
        let b = dir.path().join("b.ndjson");
        std::fs::write(&a, "0123456789").unwrap();
        std::fs::write(&b, "abc").unwrap();
        assert_eq!(total_size(&[a.clone(), b]), Some(13));
        assert_eq!(total_size(&[a.clone(), dir.path().join("missing")]), None);
        // A directory (or a FIFO, a terminal) has no meaningful size.
        assert_eq!(total_size(&[a, dir.path().to_path_buf()]), None);
    }

    #[test]
    fn a_disabled_progress_draws_nothing_and_runs_suspended_code() {
        let mut p = Progress::new(false, Some(10));
        assert!(p.bar.is_none());
        p.advance(5, &Summary::default());
        let mut ran = false;
        p.suspend(|| ran = true);
        assert!(ran);
        p.finish();
    }
}
