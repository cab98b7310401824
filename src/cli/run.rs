//! `tocsin run [-c FILE]`: the daemon. Exit 0 on a clean shutdown
//! (SIGTERM/SIGINT), 1 on a fatal error at start.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::config::Config;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Configuration file.
    #[arg(short, long, default_value = "/etc/tocsin/tocsin.yaml")]
    pub config: PathBuf,
}

pub fn run(args: RunArgs) -> ExitCode {
    let config = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_start(lower_priority)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(crate::daemon::run(config, shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM received"),
                    _ = int.recv() => tracing::info!("SIGINT received"),
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The runtime's threads (HTTP, TCP and file sources decoding events,
/// channels, the admin API) run at a lower priority than the log writer
/// and the engine threads: when the cores are short, evaluation — the one
/// serial stage — keeps going, and the sources slow down (admission then
/// answers 503) instead of preempting it. Measured in docs/performance.md
/// ("Stop 16"). Raising niceness needs no privilege; a failure leaves the
/// default priority.
fn lower_priority() {
    use thread_priority::{ThreadPriority, ThreadPriorityValue, set_current_thread_priority};
    if let Ok(p) = ThreadPriorityValue::try_from(SOURCE_PRIORITY) {
        let _ = set_current_thread_priority(ThreadPriority::Crossplatform(p));
    }
}

/// `thread-priority`'s cross-platform scale (0–99, 50 = default); below 50
/// is a positive niceness on Linux.
const SOURCE_PRIORITY: u8 = 30;
