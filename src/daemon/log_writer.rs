//! The log writer thread: the only owner of the write-ahead log. It takes
//! batches, ticks, idle advances and reloads from the sources' bounded
//! queue, appends every batch and idle advance of a group and syncs once
//! (group commit), acknowledges the logged batches right after the sync,
//! then passes everything on, in arrival order and with LSNs, to the engine
//! thread over a second bounded queue. Logging and evaluation overlap; an
//! acknowledgement never waits for the engine.
//!
//! Back-pressure: the events handed to the engine and not yet evaluated
//! are held under a budget ([`Backlog`]). While it is spent the HTTP source
//! answers 503 + `Retry-After` and TCP and file sources stop reading, so
//! what was admitted is logged and acknowledged without waiting for the
//! engine; only at twice the budget does this thread wait (the hard bound
//! on memory), and then its own queue fills.
//!
//! It paces checkpoints too: every `checkpoint_every` it syncs the log and
//! sends a checkpoint marker at the next LSN; the engine, having evaluated
//! everything before the marker, writes the checkpoint and answers with
//! the LSN; the log is then cut behind the previous checkpoint (so falling
//! back to it still finds every record).
//!
//! Invariant: a batch is acknowledged only after its record is written and
//! synced as the fsync policy says; records reach the engine in LSN order.

use std::sync::Arc;
use std::sync::mpsc as sync_mpsc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::Shared;
use super::engine_thread::Logged;
use crate::source::{Backlog, EngineMsg};
use crate::wal::{Record, Wal};

/// Messages taken at once: their log records share one write and one fsync.
const GROUP: usize = 256;

/// What the log writer owns.
pub struct LogState {
    pub wal: Wal,
    /// LSN of the newest written checkpoint. The log is cut only behind the
    /// one before it, so falling back to that checkpoint (when the newest is
    /// corrupt) still finds every record it needs.
    pub previous_checkpoint_lsn: u64,
}

/// The log writer's ends of its channels.
pub struct LogLinks {
    /// From the sources, the idle ticker, reloads and the engine.
    pub rx: mpsc::Receiver<EngineMsg>,
    /// To the engine thread (bounded).
    pub tx: sync_mpsc::SyncSender<Logged>,
    /// From the engine thread: LSNs of written checkpoints.
    pub written: sync_mpsc::Receiver<u64>,
    /// Events handed to the engine and not yet evaluated, under a budget.
    pub backlog: Arc<Backlog>,
}

pub fn run(links: LogLinks, shared: Arc<Shared>, checkpoint_every: Duration, mut state: LogState) {
    let LogLinks {
        mut rx,
        tx,
        written,
        backlog,
    } = links;
    let mut group: Vec<EngineMsg> = Vec::with_capacity(GROUP);
    let mut lsns: Vec<Option<u64>> = Vec::with_capacity(GROUP);
    let mut last_checkpoint = Instant::now();
    while let Some(first) = rx.blocking_recv() {
        group.push(first);
        while group.len() < GROUP {
            match rx.try_recv() {
                Ok(m) => group.push(m),
                Err(_) => break,
            }
        }
        log_group(&mut state.wal, &group, &mut lsns);
        // Acknowledge every logged batch before handing any over: the engine
        // queue may be full, and an acknowledgement does not wait for it.
        for (msg, lsn) in group.iter_mut().zip(&lsns) {
            if let (EngineMsg::Batch(b), Some(_)) = (msg, lsn) {
                if let Some(i) = &b.idempotent {
                    shared.idempotency.insert(i);
                }
                if let Some(done) = b.done.take() {
                    let _ = done.send(());
                }
            }
        }
        for (msg, lsn) in group.drain(..).zip(lsns.drain(..)) {
            let Some(out) = logged(msg, lsn) else {
                continue;
            };
            if let Logged::Batch { events, .. } = &out {
                // At the hard mark, wait for the engine: this queue fills
                // up and the sources feel it.
                if !backlog.wait_for_room() {
                    tracing::error!("The engine thread is gone; the log writer stops");
                    return;
                }
                backlog.add(events.len());
            }
            if tx.send(out).is_err() {
                tracing::error!("The engine thread is gone; the log writer stops");
                return;
            }
        }
        while let Ok(lsn) = written.try_recv() {
            cut(&mut state, lsn);
        }
        if last_checkpoint.elapsed() >= checkpoint_every {
            ask_checkpoint(&mut state.wal, &tx);
            last_checkpoint = Instant::now();
        }
    }
    // Every sender is gone: a last checkpoint, then the log is cut.
    let asked = ask_checkpoint(&mut state.wal, &tx);
    drop(tx);
    if asked && let Ok(lsn) = written.recv() {
        cut(&mut state, lsn);
    }
    tracing::info!("Log writer stopped");
}

/// Appends the group's batches and idle advances, then syncs once; `lsns`
/// gets each message's LSN, `None` for what was not logged (or failed).
fn log_group(wal: &mut Wal, group: &[EngineMsg], lsns: &mut Vec<Option<u64>>) {
    lsns.clear();
    let mut advance = false;
    for msg in group {
        let r = match msg {
            EngineMsg::Batch(b) => Some(wal.append_encoded(&b.record)),
            EngineMsg::IdleAdvance(to) => {
                advance = true;
                Some(wal.append(&Record::Watermark(to.0)))
            }
            EngineMsg::Tick(_) | EngineMsg::Reload { .. } => None,
        };
        lsns.push(match r {
            Some(Ok(lsn)) => Some(lsn),
            Some(Err(e)) => {
                tracing::error!(error = %e, "Cannot write to the write-ahead log; refusing the batch");
                None
            }
            None => None,
        });
    }
    // An idle advance is synced whatever the policy: alerts it releases are
    // delivered, and recovery must replay the same advance.
    let synced = if advance { wal.sync_now() } else { wal.sync() };
    if let Err(e) = synced {
        tracing::error!(error = %e, "Cannot sync the write-ahead log; refusing the batches");
        lsns.iter_mut().for_each(|l| *l = None);
    }
}

/// What the engine gets for a message; `None` when it was not logged.
fn logged(msg: EngineMsg, lsn: Option<u64>) -> Option<Logged> {
    Some(match msg {
        // `done` was answered or is dropped here: the sender sees a failure.
        EngineMsg::Batch(b) => Logged::Batch {
            lsn: lsn?,
            source: b.source,
            events: b.events,
            prepared: b.prepared,
            offset: b.offset,
        },
        EngineMsg::IdleAdvance(to) => Logged::Watermark { lsn: lsn?, to },
        EngineMsg::Tick(wall) => Logged::Tick(wall),
        EngineMsg::Reload { program, done } => Logged::Reload { program, done },
    })
}

/// Syncs the log and sends a checkpoint marker; says whether it was sent.
fn ask_checkpoint(wal: &mut Wal, tx: &sync_mpsc::SyncSender<Logged>) -> bool {
    if let Err(e) = wal.sync_now() {
        tracing::error!(error = %e, "Cannot sync before a checkpoint; skipping it");
        return false;
    }
    tx.send(Logged::Checkpoint {
        lsn: wal.next_lsn(),
    })
    .is_ok()
}

/// A checkpoint at `lsn` is written: cut the log behind the previous one.
fn cut(state: &mut LogState, lsn: u64) {
    state.wal.truncate_before(state.previous_checkpoint_lsn);
    state.previous_checkpoint_lsn = lsn;
}
