//! Recovery at start: restore the newest valid checkpoint, then replay the
//! write-ahead log after it through the same pipeline, re-recording the
//! alerts it produces (ids are stable, so a re-sent alert is a duplicate a
//! receiver can drop). Only then does the daemon report ready.

use std::collections::HashMap;
use std::path::Path;

use super::Shared;
use super::engine_thread::deliver;
use crate::checkpoint;
use crate::decode::{Decoded, Decoder};
use crate::event::EventTime;
use crate::lang::Program;
use crate::outbox::Outbox;
use crate::pipeline::Pipeline;
use crate::source::FileOffset;
use crate::wal::{FsyncPolicy, Record, Wal};

#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    #[error(transparent)]
    Checkpoint(#[from] checkpoint::CheckpointError),
    #[error(transparent)]
    Wal(#[from] crate::wal::WalError),
}

/// What the daemon's threads take over from recovery.
pub struct Durable {
    /// The log, opened after its last valid record (for the log writer).
    pub wal: Wal,
    /// Position of each tailed file after its last logged line.
    pub offsets: HashMap<String, FileOffset>,
    /// LSN of the checkpoint recovery started from (0 without one).
    pub previous_checkpoint_lsn: u64,
}

/// What recovery found.
pub struct Recovered {
    pub durable: Durable,
    pub replayed_batches: u64,
    pub restored_rules: usize,
}

/// `on_disk`: the rules loaded from disk at this start, which `pipeline`
/// runs on entry and on return; the log in between is evaluated with the
/// rules that were running when it was written.
pub fn recover(
    state_dir: &Path,
    policy: FsyncPolicy,
    pipeline: &mut Pipeline,
    on_disk: &Program,
    decoder: &Decoder,
    shared: &Shared,
    outbox: &Outbox,
) -> Result<Recovered, RecoverError> {
    let mut offsets: HashMap<String, FileOffset> = HashMap::new();
    let mut from = 0;
    let mut restored_rules = 0;
    let opts = shared.rule_options();
    // The rules last recorded (checkpoint or log) before the log's end.
    let mut recorded: Option<Vec<(String, String)>> = None;
    if let Some(mut cp) = checkpoint::read_latest(state_dir)? {
        if let Some(files) = cp.rules.take() {
            switch_rules(pipeline, &files, &opts, "the checkpoint");
            recorded = Some(files);
        }
        restored_rules = pipeline.restore(&cp.pipeline).len();
        for o in &cp.file_offsets {
            let o: FileOffset = o.into();
            offsets.insert(o.path.clone(), o);
        }
        for i in &cp.idempotency {
            shared.idempotency.insert(&crate::wal::Idempotent {
                key: i.key.clone(),
                status: i.status,
                body: i.body.clone(),
            });
        }
        shared.set_last_checkpoint(cp.written_at);
        from = cp.lsn;
        tracing::info!(
            lsn = cp.lsn,
            rules_restored = restored_rules,
            "Checkpoint restored"
        );
    }
    let (mut wal, records) = Wal::open(state_dir, policy, from)?;
    let mut alerts = Vec::new();
    let mut replayed_batches = 0;
    for (_, rec) in records {
        match rec {
            Record::Batch {
                events,
                offset,
                idempotent,
                ..
            } => {
                replayed_batches += 1;
                for (time, raw) in events {
                    // The logged time is authoritative (it may be an arrival time).
                    if let Decoded::Event(mut ev) =
                        decoder.decode(raw.as_bytes(), Some(EventTime(time)))
                    {
                        ev.time = EventTime(time);
                        let _ = pipeline.push(ev, &mut alerts);
                    }
                }
                if let Some(o) = offset {
                    offsets.insert(o.path.clone(), o);
                }
                if let Some(i) = idempotent {
                    shared.idempotency.insert(&i);
                }
            }
            Record::Watermark(w) => pipeline.advance(EventTime(w), &mut alerts),
            Record::Rules(files) => {
                switch_rules(pipeline, &files, &opts, "the log");
                recorded = Some(files);
            }
        }
        deliver(&mut alerts, shared, outbox);
    }
    if replayed_batches > 0 {
        tracing::info!(batches = replayed_batches, "Write-ahead log replayed");
    }
    // From here on the rules on disk run, and the log says so (on a first
    // start too), so that a later recovery knows which rules each record
    // met: they may have changed while the daemon was down, or before a
    // reload it did not live to make.
    if recorded.as_deref() != Some(&on_disk.texts[..]) {
        wal.append(&Record::Rules(on_disk.texts.to_vec()))?;
        wal.sync_now()?;
    }
    if pipeline.texts()[..] != on_disk.texts[..] {
        pipeline.reload(on_disk);
        tracing::info!(
            rules = on_disk.rules.len(),
            "Rules on disk differ from those of the recovered state: reloaded"
        );
    }
    Ok(Recovered {
        durable: Durable {
            wal,
            offsets,
            previous_checkpoint_lsn: from,
        },
        replayed_batches,
        restored_rules,
    })
}

/// Swaps in the rules of `files` (from a checkpoint or a log record) if
/// they differ from the running ones; rules that no longer load (a channel
/// removed from the configuration, say) are kept out with a warning, and
/// the running ones stay.
fn switch_rules(
    pipeline: &mut Pipeline,
    files: &[(String, String)],
    opts: &crate::lang::Options,
    from: &str,
) {
    if pipeline.texts()[..] == *files {
        return;
    }
    let loaded = crate::lang::load_texts(files.to_vec(), opts);
    if loaded.has_errors() {
        tracing::warn!(
            errors = %loaded.error_lines().join("; "),
            "The rules recorded in {from} no longer load; evaluating with the running rules"
        );
        return;
    }
    pipeline.reload(&loaded.program);
}
