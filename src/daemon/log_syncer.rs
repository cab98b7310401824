//! The log syncer thread (`tocsin-sync`), used with `fsync: batch`: the log
//! writer writes each group of batches and hands it to the engine at once;
//! this thread syncs the segment and then acknowledges every batch that was
//! written before the sync began. A sync that takes milliseconds (the
//! disk's cache flush) then holds up only the acknowledgements, not the
//! next group's write nor the engine.
//!
//! Invariant: an acknowledgement is sent only after a `sync_data` that
//! began after its batch's write had returned.

use std::fs::File;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use tokio::sync::oneshot;

use crate::source::IdempotencyStore;
use crate::wal::Idempotent;

/// What a logged batch is owed once it is durable.
pub struct Ack {
    pub done: Option<oneshot::Sender<()>>,
    /// The request's idempotency key and answer, answered from then on.
    pub idempotent: Option<Idempotent>,
}

impl Ack {
    pub fn answer(self, answers: &IdempotencyStore) {
        if let Some(i) = &self.idempotent {
            answers.insert(i);
        }
        if let Some(done) = self.done {
            let _ = done.send(());
        }
    }
}

/// Acknowledgements waiting for the next sync, shared by the log writer
/// (which adds them) and the syncer thread.
#[derive(Default)]
pub struct Syncer {
    waiting: Mutex<Waiting>,
    wake: Condvar,
}

#[derive(Default)]
struct Waiting {
    /// The segment the newest waiting batch was written to.
    segment: Option<(Arc<File>, Arc<Path>)>,
    acks: Vec<Ack>,
    closed: bool,
}

impl Syncer {
    fn lock(&self) -> MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Batches whose records are written to `segment` (the write returned)
    /// wait for its next sync. Records of earlier segments were synced when
    /// the log rolled over to this one.
    pub fn push(&self, segment: (Arc<File>, &Path), acks: impl IntoIterator<Item = Ack>) {
        let mut w = self.lock();
        let (file, path) = segment;
        if !w
            .segment
            .as_ref()
            .is_some_and(|(f, _)| Arc::ptr_eq(f, &file))
        {
            w.segment = Some((file, Arc::from(path)));
        }
        w.acks.extend(acks);
        drop(w);
        self.wake.notify_one();
    }

    /// No more batches: [`Syncer::run`] syncs what waits and returns.
    pub fn close(&self) {
        self.lock().closed = true;
        self.wake.notify_one();
    }

    /// The syncer thread's loop: sync, then answer what was waiting. A
    /// failed sync drops the waiting acknowledgements (their senders see a
    /// failure, as when a batch cannot be written).
    pub fn run(&self, answers: &IdempotencyStore) {
        let mut taken: Vec<Ack> = Vec::new();
        loop {
            let segment = {
                let mut w = self.lock();
                while w.acks.is_empty() && !w.closed {
                    w = self.wake.wait(w).unwrap_or_else(|p| p.into_inner());
                }
                if w.acks.is_empty() {
                    return;
                }
                std::mem::swap(&mut taken, &mut w.acks);
                w.segment.clone()
            };
            let synced = segment.as_ref().map_or(Ok(()), |(f, _)| f.sync_data());
            match synced {
                Ok(()) => taken.drain(..).for_each(|a| a.answer(answers)),
                Err(e) => {
                    let path = segment.map(|(_, p)| p.display().to_string());
                    tracing::error!(
                        error = %e,
                        segment = path.as_deref().unwrap_or(""),
                        "Cannot sync the write-ahead log; refusing the batches"
                    );
                    taken.clear();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(key: &str) -> (Ack, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        let a = Ack {
            done: Some(tx),
            idempotent: Some(Idempotent {
                key: key.into(),
                status: 202,
                body: format!("{{\"key\":\"{key}\"}}"),
            }),
        };
        (a, rx)
    }

    #[test]
    fn acknowledges_after_a_sync_and_records_idempotent_answers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg.log");
        let file = Arc::new(File::create(&path).unwrap());
        let syncer = Arc::new(Syncer::default());
        let answers = Arc::new(IdempotencyStore::default());
        let (a1, mut r1) = ack("k1");
        let (a2, r2) = ack("k2");
        syncer.push((file.clone(), &path), [a1]);
        // Nothing is answered before the thread has synced.
        assert!(r1.try_recv().is_err());
        assert!(answers.get("k1").is_none());
        let t = {
            let (s, a) = (syncer.clone(), answers.clone());
            std::thread::spawn(move || s.run(&a))
        };
        syncer.push((file, &path), [a2]);
        r2.blocking_recv().unwrap();
        r1.blocking_recv().unwrap();
        assert_eq!(answers.get("k1").unwrap().0, 202);
        assert_eq!(answers.get("k2").unwrap().1, "{\"key\":\"k2\"}");
        syncer.close();
        t.join().unwrap();
    }

    #[test]
    fn close_answers_what_waits_then_stops() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg.log");
        let file = Arc::new(File::create(&path).unwrap());
        let syncer = Syncer::default();
        let (a, r) = ack("k");
        syncer.push((file, &path), [a]);
        syncer.close();
        syncer.run(&IdempotencyStore::default());
        assert!(r.blocking_recv().is_ok());
    }
}
