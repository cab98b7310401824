//! The log writer thread: the only owner of the write-ahead log. It takes
//! batches, ticks, idle advances and reloads from the sources' bounded
//! queue, appends every batch, idle advance and reload of a group in one
//! write,
//! then passes everything on, in arrival order and with LSNs, to the engine
//! thread over a second bounded queue. Logging and evaluation overlap; an
//! acknowledgement never waits for the engine.
//!
//! Acknowledgements wait for the sync the fsync policy asks for. With
//! `fsync: batch` the syncs run on a thread of their own
//! ([`super::log_syncer`]): while the disk flushes one group, the next is
//! written and the engine evaluates both (group commit, pipelined). The
//! engine may thus see a batch before it is durable, never before it is
//! written: a killed process loses nothing written, so recovery replays
//! exactly what the engine saw (docs/durability.md). Idle advances and
//! reloads are synced here, before the engine sees them, under every policy.
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
//! synced as the fsync policy says; records reach the engine in LSN order,
//! each after its write returned.

use std::sync::Arc;
use std::sync::mpsc as sync_mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::engine_thread::Logged;
use super::log_syncer::{Ack, Syncer};
use crate::source::{Backlog, EngineMsg, IdempotencyStore};
use crate::wal::{FsyncPolicy, Record, Wal};

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

/// The syncer and the thread that runs it.
type SyncThread = (Arc<Syncer>, JoinHandle<()>);

pub fn run(
    links: LogLinks,
    answers: Arc<IdempotencyStore>,
    checkpoint_every: Duration,
    state: LogState,
) {
    let syncer = (state.wal.policy() == FsyncPolicy::Batch)
        .then(|| start_syncer(answers.clone()))
        .flatten();
    run_with(links, answers, checkpoint_every, state, syncer);
}

/// [`run`] with the syncer given (`None`: this thread syncs).
fn run_with(
    links: LogLinks,
    answers: Arc<IdempotencyStore>,
    checkpoint_every: Duration,
    mut state: LogState,
    syncer: Option<SyncThread>,
) {
    let LogLinks {
        mut rx,
        tx,
        written,
        backlog,
    } = links;
    let mut group: Vec<EngineMsg> = Vec::with_capacity(GROUP);
    let mut lsns: Vec<Option<u64>> = Vec::with_capacity(GROUP);
    let mut acks: Vec<Ack> = Vec::with_capacity(GROUP);
    let mut last_checkpoint = Instant::now();
    while let Some(first) = rx.blocking_recv() {
        group.push(first);
        while group.len() < GROUP {
            match rx.try_recv() {
                Ok(m) => group.push(m),
                Err(_) => break,
            }
        }
        let synced = log_group(&mut state.wal, &group, &mut lsns, syncer.is_none());
        for (msg, lsn) in group.iter_mut().zip(&lsns) {
            if let (EngineMsg::Batch(b), Some(_)) = (msg, lsn) {
                acks.push(Ack {
                    done: b.done.take(),
                    idempotent: b.idempotent.take(),
                });
            }
        }
        // Acknowledge (or leave to the syncer) before handing anything over:
        // the engine queue may be full, and an acknowledgement does not
        // wait for it.
        match &syncer {
            Some((s, _)) if !synced => s.push(state.wal.segment(), acks.drain(..)),
            _ => acks.drain(..).for_each(|a| a.answer(&answers)),
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
                    return stop_syncer(syncer);
                }
                backlog.add(events.len());
            }
            if tx.send(out).is_err() {
                tracing::error!("The engine thread is gone; the log writer stops");
                return stop_syncer(syncer);
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
    stop_syncer(syncer);
    if asked && let Ok(lsn) = written.recv() {
        cut(&mut state, lsn);
    }
    tracing::info!("Log writer stopped");
}

/// The syncer and its thread; `None` (the log writer then syncs itself)
/// when the thread cannot start.
fn start_syncer(answers: Arc<IdempotencyStore>) -> Option<SyncThread> {
    let syncer = Arc::new(Syncer::default());
    let s = syncer.clone();
    match std::thread::Builder::new()
        .name("tocsin-sync".into())
        .spawn(move || s.run(&answers))
    {
        Ok(t) => Some((syncer, t)),
        Err(e) => {
            tracing::warn!(error = %e, "Cannot start the log syncer thread; the log writer syncs");
            None
        }
    }
}

/// Lets the syncer answer what waits, and waits for it to stop.
fn stop_syncer(syncer: Option<SyncThread>) {
    if let Some((s, t)) = syncer {
        s.close();
        let _ = t.join();
    }
}

/// Appends the group's batches, idle advances and reloads in one write;
/// `lsns` gets each message's LSN, `None` for what was not logged (or
/// failed). Syncs as the policy says when `sync` is set, always when the
/// group has an idle advance or a reload, and says whether it did.
fn log_group(wal: &mut Wal, group: &[EngineMsg], lsns: &mut Vec<Option<u64>>, sync: bool) -> bool {
    lsns.clear();
    let mut must_sync = false;
    let mut tick = false;
    for msg in group {
        let r = match msg {
            EngineMsg::Batch(b) => Some(wal.append_encoded(&b.record)),
            EngineMsg::IdleAdvance(to) => {
                must_sync = true;
                Some(wal.append(&Record::Watermark(to.0)))
            }
            // Logged so that recovery switches rules at the same place.
            EngineMsg::Reload { program, .. } => {
                must_sync = true;
                Some(wal.append(&Record::Rules(program.texts.to_vec())))
            }
            EngineMsg::Tick(_) => {
                tick = true;
                None
            }
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
    // An idle advance or a reload is synced whatever the policy: alerts it
    // releases are delivered, and recovery must replay the same change.
    // With `interval`, a tick (every SYNC_INTERVAL) syncs what is left.
    let (synced, result) = if must_sync || (tick && wal.policy() == FsyncPolicy::Interval) {
        (true, wal.sync_now())
    } else if sync {
        (true, wal.sync())
    } else {
        (false, wal.flush())
    };
    if let Err(e) = result {
        tracing::error!(error = %e, "Cannot write or sync the write-ahead log; refusing the batches");
        lsns.iter_mut().for_each(|l| *l = None);
    }
    synced
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
        // Not logged (a failed write): not applied; the reload reports it.
        EngineMsg::Reload { program, done } => {
            lsn?;
            Logged::Reload { program, done }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Batch;
    use tokio::sync::oneshot;

    /// With `fsync: interval`, a write soon after a sync is left unsynced,
    /// and the next tick (every `SYNC_INTERVAL`) syncs it: when traffic
    /// stops, nothing acknowledged waits longer than that.
    #[test]
    fn with_interval_a_tick_syncs_what_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path(), FsyncPolicy::Interval, 0).unwrap();
        let mut lsns = Vec::new();
        let ev = crate::decode::test_event(r#"{"type":"login","ts":1000}"#);
        let batch = EngineMsg::Batch(Batch::new("http", vec![ev], None, None, None));
        // Written within SYNC_INTERVAL of the log's opening: not synced yet.
        log_group(&mut wal, std::slice::from_ref(&batch), &mut lsns, true);
        assert!(
            wal.unsynced(),
            "a write within SYNC_INTERVAL of a sync waits"
        );
        log_group(
            &mut wal,
            &[EngineMsg::Tick(crate::source::now())],
            &mut lsns,
            true,
        );
        assert!(!wal.unsynced(), "the tick synced it");
    }

    /// A log writer on a fresh log in `dir`, with the given syncer.
    struct Writer {
        requests: mpsc::Sender<EngineMsg>,
        engine: sync_mpsc::Receiver<Logged>,
        written: sync_mpsc::Sender<u64>,
        thread: JoinHandle<()>,
    }

    impl Writer {
        fn start(dir: &std::path::Path, policy: FsyncPolicy, syncer: Option<SyncThread>) -> Self {
            let (wal, _) = Wal::open(dir, policy, 0).unwrap();
            let (requests, rx) = mpsc::channel(4);
            let (tx, engine) = sync_mpsc::sync_channel(4);
            let (written, written_rx) = sync_mpsc::channel::<u64>();
            let links = LogLinks {
                rx,
                tx,
                written: written_rx,
                backlog: Arc::new(Backlog::new(100)),
            };
            let state = LogState {
                wal,
                previous_checkpoint_lsn: 0,
            };
            let answers = Arc::new(IdempotencyStore::default());
            let thread = std::thread::spawn(move || {
                run_with(links, answers, Duration::from_secs(3600), state, syncer)
            });
            Writer {
                requests,
                engine,
                written,
                thread,
            }
        }

        /// Sends a one-event batch; its acknowledgement.
        fn send(&self) -> oneshot::Receiver<()> {
            let (done, acked) = oneshot::channel();
            let ev = crate::decode::test_event(r#"{"type":"login","ts":1000}"#);
            let batch = Batch::new("http", vec![ev], None, None, Some(done));
            self.requests
                .blocking_send(EngineMsg::Batch(batch))
                .unwrap();
            acked
        }

        fn expect_batch(&self, want_lsn: u64) {
            match self.engine.recv().unwrap() {
                Logged::Batch { lsn, events, .. } => assert_eq!((lsn, events.len()), (want_lsn, 1)),
                _ => panic!("expected the batch"),
            }
        }

        /// Closes the requests; the writer asks for a last checkpoint and,
        /// none being written, stops.
        fn stop(self) {
            drop(self.requests);
            assert!(matches!(
                self.engine.recv().unwrap(),
                Logged::Checkpoint { .. }
            ));
            drop(self.written);
            self.thread.join().unwrap();
        }
    }

    /// With `fsync: batch` the engine gets a batch as soon as it is
    /// written, while its acknowledgement waits for the syncer.
    #[test]
    fn the_engine_gets_a_written_batch_before_its_sync_acknowledges_it() {
        let dir = tempfile::tempdir().unwrap();
        // The syncer's thread starts only when the test opens the gate.
        let syncer = Arc::new(Syncer::default());
        let (gate, opened) = sync_mpsc::channel::<()>();
        let sync_thread = {
            let s = syncer.clone();
            std::thread::spawn(move || {
                let _ = opened.recv();
                s.run(&IdempotencyStore::default());
            })
        };
        let w = Writer::start(dir.path(), FsyncPolicy::Batch, Some((syncer, sync_thread)));
        let mut acked = w.send();
        w.expect_batch(1);
        assert!(acked.try_recv().is_err(), "acknowledged before any sync");
        gate.send(()).unwrap();
        acked.blocking_recv().expect("acknowledged after the sync");
        w.stop();
    }

    /// Without a syncer (`fsync: interval` or `off`, or its thread could
    /// not start) the log writer acknowledges a batch itself, before
    /// handing it over.
    #[test]
    fn without_a_syncer_the_writer_acknowledges_before_the_hand_over() {
        for policy in [FsyncPolicy::Batch, FsyncPolicy::Interval, FsyncPolicy::Off] {
            let dir = tempfile::tempdir().unwrap();
            let w = Writer::start(dir.path(), policy, None);
            let mut acked = w.send();
            w.expect_batch(1);
            assert!(
                acked.try_recv().is_ok(),
                "{policy:?}: not acknowledged first"
            );
            let acked = w.send();
            w.expect_batch(2);
            acked.blocking_recv().expect("acknowledged");
            w.stop();
        }
    }
}
