//! Sources: HTTP, TCP and tailed files. Each turns input into decoded
//! events (decoding runs here, on the source's task, so it spreads over
//! cores), encodes each batch's log record (so does that work too) and
//! hands the batches to the daemon's log writer through one bounded queue.
//! A batch is acknowledged once it is in the write-ahead log (synced as
//! the fsync policy says); the engine evaluates it afterwards.

pub mod file;
pub mod http;
pub mod serve;
pub mod tcp;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};

use crate::decode::{Decoded, Decoder, RejectReason};
use crate::engine::{Prepared, Preparer};
use crate::event::{Event, EventTime};
use crate::metrics::Metrics;

/// The wall clock in milliseconds since the epoch (sources only: the engine
/// never reads the clock).
pub fn now() -> EventTime {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    EventTime(ms)
}

/// The position of the first `\n` in `b`, eight bytes at a time (NDJSON
/// bodies are split on every request; a byte-by-byte search showed in
/// profiles).
pub(crate) fn find_newline(b: &[u8]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    const NL: u64 = LO * b'\n' as u64;
    let mut chunks = b.chunks_exact(8);
    let mut at = 0;
    for c in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(c);
        let x = u64::from_le_bytes(word) ^ NL;
        // The lowest set bit marks the first zero byte exactly (borrows
        // only run towards higher bytes).
        let zero = x.wrapping_sub(LO) & !x & HI;
        if zero != 0 {
            return Some(at + (zero.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&c| c == b'\n')
        .map(|p| at + p)
}

/// A file source's position after a line: which file, how far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileOffset {
    /// The tailed path pattern's matched file.
    pub path: String,
    /// Device and inode of the file, to tell a rotated file from a new one.
    pub identity: (u64, u64),
    pub offset: u64,
}

/// Events from one source read, on their way to the engine.
#[derive(Debug)]
pub struct Batch {
    pub source: Arc<str>,
    pub events: Vec<Event>,
    /// For a file source: the position after the last line of the batch.
    pub offset: Option<FileOffset>,
    /// For an HTTP request with an `Idempotency-Key`: the key and the answer
    /// the request gets, logged with the events.
    pub idempotent: Option<crate::wal::Idempotent>,
    /// The batch's write-ahead log record, encoded by the source.
    pub record: crate::wal::Encoded,
    /// What each event's rules decide before touching state, worked out
    /// here on the source's thread ([`Batch::prepared_by`]); empty if not.
    pub prepared: Vec<Prepared>,
    /// Answered once the batch is in the write-ahead log (durable as the
    /// fsync policy says); dropped unanswered when it could not be logged.
    pub done: Option<oneshot::Sender<()>>,
}

impl Batch {
    /// A batch with its log record encoded from `events`.
    pub fn new(
        source: &str,
        events: Vec<Event>,
        offset: Option<FileOffset>,
        idempotent: Option<crate::wal::Idempotent>,
        done: Option<oneshot::Sender<()>>,
    ) -> Self {
        let record = crate::wal::Encoded::batch(
            source,
            events.iter().map(|e| (e.time.0, e.raw())),
            offset.as_ref(),
            idempotent.as_ref(),
        );
        Batch {
            source: Arc::from(source),
            events,
            offset,
            idempotent,
            record,
            prepared: Vec::new(),
            done,
        }
    }

    /// Prepares every event for the engine's current rules (off the engine
    /// thread: this is the rules' stateless work, spread over the cores).
    pub fn prepared_by(mut self, slot: &PreparerSlot) -> Self {
        if let Some(p) = slot.get() {
            let mut kbuf = String::new();
            self.prepared = self
                .events
                .iter()
                .map(|e| p.prepare(e, &mut kbuf))
                .collect();
        }
        self
    }
}

/// The [`Preparer`] of the rules the engine runs, for the sources; set at
/// start and after every reload. A batch prepared for rules that were
/// replaced before it is evaluated is decided again by the engine.
#[derive(Default)]
pub struct PreparerSlot(std::sync::RwLock<Option<Arc<Preparer>>>);

impl PreparerSlot {
    pub fn set(&self, p: Arc<Preparer>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Some(p);
    }

    pub fn get(&self) -> Option<Arc<Preparer>> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// How many idempotency keys are remembered.
pub const IDEMPOTENCY_KEYS: usize = 100_000;

/// Answers of accepted HTTP requests by idempotency key, the newest
/// [`IDEMPOTENCY_KEYS`]; filled by the engine thread as it logs them, so the
/// set survives crashes (log + checkpoint).
/// Answers by key, and the keys oldest first (for eviction).
type Answers = (
    std::collections::HashMap<String, (u16, String)>,
    std::collections::VecDeque<String>,
);

#[derive(Default)]
pub struct IdempotencyStore {
    inner: std::sync::Mutex<Answers>,
    /// Keys of requests being taken in now, each with a receiver that
    /// learns when that request is done (its [`Claim`] is dropped).
    in_flight:
        std::sync::Mutex<std::collections::HashMap<String, tokio::sync::watch::Receiver<()>>>,
}

/// The right to take in a request under an idempotency key: while it is
/// held, another request with the key waits ([`IdempotencyStore::claim`]).
/// Dropped once the request's fate is settled — its answer stored, or the
/// request refused without one.
pub struct Claim {
    store: Arc<IdempotencyStore>,
    key: String,
    _done: tokio::sync::watch::Sender<()>,
}

impl Drop for Claim {
    fn drop(&mut self) {
        // Removed first; then `_done` is dropped, which wakes the waiters.
        let mut m = self
            .store
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        m.remove(&self.key);
    }
}

impl IdempotencyStore {
    /// The first answer under `key`, or the claim to take the request in.
    /// A request with the key of one still in progress waits for it: two
    /// concurrent requests with one key (a retry sent while the first is
    /// still uploading or waiting for its sync) must not both be taken in.
    /// If the first leaves no answer (refused), the waiter takes its turn.
    pub async fn claim(self: &Arc<Self>, key: &str) -> Result<Claim, (u16, String)> {
        loop {
            let mut running = {
                let mut m = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
                // Looked up under the in-flight lock: a finished request
                // stored its answer before it left the in-flight set.
                if let Some(answer) = self.get(key) {
                    return Err(answer);
                }
                match m.get(key) {
                    Some(rx) => rx.clone(),
                    None => {
                        let (tx, rx) = tokio::sync::watch::channel(());
                        m.insert(key.to_string(), rx);
                        return Ok(Claim {
                            store: self.clone(),
                            key: key.to_string(),
                            _done: tx,
                        });
                    }
                }
            };
            // Nothing is ever sent: this returns when the claim is dropped.
            let _ = running.changed().await;
        }
    }

    pub fn get(&self, key: &str) -> Option<(u16, String)> {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.0.get(key).cloned()
    }

    pub fn insert(&self, i: &crate::wal::Idempotent) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if g.0
            .insert(i.key.clone(), (i.status, i.body.clone()))
            .is_none()
        {
            g.1.push_back(i.key.clone());
            while g.1.len() > IDEMPOTENCY_KEYS {
                if let Some(old) = g.1.pop_front() {
                    g.0.remove(&old);
                }
            }
        }
    }

    /// Oldest first.
    pub fn list(&self) -> Vec<crate::wal::Idempotent> {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.1.iter()
            .filter_map(|k| {
                g.0.get(k).map(|(status, body)| crate::wal::Idempotent {
                    key: k.clone(),
                    status: *status,
                    body: body.clone(),
                })
            })
            .collect()
    }
}

/// Messages to the daemon's log writer, which logs what needs logging and
/// passes everything on to the engine thread in the same order.
#[derive(Debug)]
pub enum EngineMsg {
    Batch(Batch),
    /// Swap in new rules; answered when done.
    Reload {
        program: crate::lang::Program,
        done: oneshot::Sender<()>,
    },
    /// Wall-clock tick for idle advance (the engine thread compares it with
    /// the time of the last accepted event).
    Tick(EventTime),
    /// From the engine thread: advance the watermark to this instant for
    /// idleness. Logged first, then evaluated in log order.
    IdleAdvance(EventTime),
}

/// Events acknowledged (logged) and not yet evaluated by the engine, held
/// under a budget: this bounds the memory of the queue behind the log
/// writer, and how far acknowledgements may run ahead of evaluation.
///
/// Two marks: at the budget the sources stop offering (HTTP answers 503 +
/// `Retry-After` before decoding, TCP and file sources wait before
/// sending); at twice the budget the log writer itself waits before
/// handing a batch over. Batches already admitted below the budget thus
/// are logged and acknowledged without waiting for the engine; the log
/// writer's wait is the hard bound on memory. The log writer adds a
/// batch's events before handing it over, the engine takes them off once
/// evaluated.
#[derive(Debug)]
pub struct Backlog {
    queued: AtomicUsize,
    budget: usize,
    /// Set when the engine is gone: nobody waits for room any more.
    closed: AtomicBool,
    lock: std::sync::Mutex<()>,
    /// Wakes the log writer (below the hard mark).
    room: std::sync::Condvar,
    /// Wakes waiting sources (below the budget).
    sources: tokio::sync::Notify,
}

impl Backlog {
    pub fn new(budget: usize) -> Self {
        Backlog {
            queued: AtomicUsize::new(0),
            budget: budget.max(1),
            closed: AtomicBool::new(false),
            lock: std::sync::Mutex::new(()),
            room: std::sync::Condvar::new(),
            sources: tokio::sync::Notify::new(),
        }
    }

    /// Whether the budget is spent (the engine is behind): sources stop.
    pub fn full(&self) -> bool {
        self.queued.load(Ordering::Acquire) >= self.budget
    }

    /// The hard mark, where the log writer waits.
    fn hard(&self) -> usize {
        self.budget.saturating_mul(2)
    }

    /// Events queued for the engine now.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    /// Waits (async) until the budget has room or the engine is gone.
    pub async fn until_room(&self) {
        loop {
            let woken = self.sources.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if !self.full() || self.closed.load(Ordering::Acquire) {
                return;
            }
            woken.await;
        }
    }

    /// The log writer: blocks while the hard mark is reached; `false` once
    /// the engine is gone.
    pub fn wait_for_room(&self) -> bool {
        let mut g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        while self.queued() >= self.hard() && !self.closed.load(Ordering::Acquire) {
            // The timeout only guards against a missed wake-up.
            g = self
                .room
                .wait_timeout(g, std::time::Duration::from_millis(100))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        !self.closed.load(Ordering::Acquire)
    }

    /// `n` events were handed to the engine.
    pub fn add(&self, n: usize) {
        self.queued.fetch_add(n, Ordering::AcqRel);
    }

    /// `n` events were evaluated.
    pub fn take(&self, n: usize) {
        let before = self.queued.fetch_sub(n, Ordering::AcqRel);
        let after = before - n;
        if before >= self.hard() && after < self.hard() {
            let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
            self.room.notify_all();
        }
        if before >= self.budget && after < self.budget {
            self.sources.notify_waiters();
        }
    }

    /// The engine is gone: wake and release every waiter.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        {
            let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
            self.room.notify_all();
        }
        self.sources.notify_waiters();
    }
}

/// What every source needs to decode and hand over events.
#[derive(Clone)]
pub struct Ingest {
    pub decoder: Decoder,
    pub max_event_bytes: usize,
    pub max_future_ms: i64,
    pub metrics: Arc<Metrics>,
    pub tx: mpsc::Sender<EngineMsg>,
    /// Events waiting for the engine; HTTP answers 503 while it is full.
    pub backlog: Arc<Backlog>,
    /// The last rejected inputs of each source, for the console.
    pub rejects: Arc<RejectSamples>,
    /// The rules' stateless part, to prepare batches with.
    pub preparer: Arc<PreparerSlot>,
}

impl Ingest {
    /// Decodes one input item; `Ok(None)` for a blank line.
    pub fn decode(
        &self,
        source: &str,
        bytes: &[u8],
        now: EventTime,
    ) -> Result<Option<Event>, RejectReason> {
        let r = if bytes.len() > self.max_event_bytes {
            Err(RejectReason::TooLarge)
        } else {
            match self.decoder.decode(bytes, Some(now)) {
                Decoded::Blank => return Ok(None),
                Decoded::Rejected(r) => Err(r),
                Decoded::Event(ev) if ev.time > now.saturating_add(self.max_future_ms) => {
                    Err(RejectReason::FutureTime)
                }
                Decoded::Event(ev) => Ok(Some(ev)),
            }
        };
        if let Err(reason) = &r {
            self.metrics.reject(source, reason.as_str());
            self.rejects.record(source, reason.as_str(), bytes, now);
        }
        r
    }
}

/// How many rejected inputs are kept per source.
pub const REJECT_SAMPLES: usize = 20;
/// How many bytes of a rejected input are kept.
pub const REJECT_SAMPLE_BYTES: usize = 200;

/// One rejected input, as the console shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectSample {
    pub reason: &'static str,
    /// The first [`REJECT_SAMPLE_BYTES`] bytes, lossily decoded.
    pub head: String,
    /// The input was longer than `head`.
    pub truncated: bool,
    /// Wall-clock time of the rejection.
    pub at: EventTime,
}

/// The newest [`REJECT_SAMPLES`] rejected inputs of each source. Written
/// only on the rejection path (never for accepted events), so the lock is
/// off the hot path; memory is bounded by sources × samples × bytes.
#[derive(Debug, Default)]
pub struct RejectSamples {
    inner: std::sync::Mutex<
        std::collections::BTreeMap<String, std::collections::VecDeque<RejectSample>>,
    >,
}

impl RejectSamples {
    pub fn record(&self, source: &str, reason: &'static str, bytes: &[u8], at: EventTime) {
        let cut = bytes.len().min(REJECT_SAMPLE_BYTES);
        let sample = RejectSample {
            reason,
            head: String::from_utf8_lossy(&bytes[..cut]).into_owned(),
            truncated: bytes.len() > cut,
            at,
        };
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let q = g.entry(source.to_string()).or_default();
        if q.len() == REJECT_SAMPLES {
            q.pop_front();
        }
        q.push_back(sample);
    }

    /// The samples of one source, newest first.
    pub fn of(&self, source: &str) -> Vec<RejectSample> {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.get(source)
            .map(|q| q.iter().rev().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::Backlog;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    #[test]
    fn the_log_writer_waits_at_twice_the_budget_until_the_engine_takes_events() {
        let b = Arc::new(Backlog::new(5));
        b.add(5);
        assert!(b.full());
        assert!(b.wait_for_room(), "below the hard mark: no wait");
        b.add(5);
        let taker = {
            let b = b.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(150));
                b.take(4);
            })
        };
        let started = Instant::now();
        assert!(b.wait_for_room());
        assert!(started.elapsed() >= Duration::from_millis(100));
        assert_eq!(b.queued(), 6);
        assert!(b.full(), "still over the budget: sources keep waiting");
        taker.join().unwrap();
    }

    #[tokio::test]
    async fn sources_wait_until_the_backlog_is_below_its_budget() {
        let b = Arc::new(Backlog::new(10));
        b.add(12);
        let waiter = {
            let b = b.clone();
            tokio::spawn(async move { b.until_room().await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished());
        b.take(2);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "10 queued: still at the budget");
        b.take(1);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken below the budget")
            .unwrap();
    }

    #[test]
    fn find_newline_agrees_with_a_plain_search() {
        for len in 0..30 {
            for nl in 0..=len {
                let mut b = vec![b'a'; len];
                // High bytes around, so a borrow could be mistaken for a match.
                b.iter_mut().step_by(3).for_each(|c| *c = 0x8b);
                if nl < len {
                    b[nl] = b'\n';
                    b[len - 1] = b'\n';
                }
                let want = b.iter().position(|&c| c == b'\n');
                assert_eq!(super::find_newline(&b), want, "{len} {nl}");
            }
        }
        assert_eq!(super::find_newline(b"\x0b\x0a"), Some(1));
    }

    #[test]
    fn a_closed_backlog_releases_its_waiter() {
        let b = Arc::new(Backlog::new(1));
        b.add(5);
        let closer = {
            let b = b.clone();
            std::thread::spawn(move || b.close())
        };
        assert!(!b.wait_for_room());
        closer.join().unwrap();
    }
}
