//! Shard snapshots in the compacted topic `<group>.state` (one partition):
//! writes each snapshot as chunks, then its manifest, then tombstones for
//! the chunks it replaces ([`super::chunk`] has the format and why it
//! survives compaction and crashes), and reads the latest of each shard.
//!
//! Chunks are acknowledged before their manifest is sent, and the manifest
//! before the tombstones. The manifest is flushed on its own, in a batch of
//! its own: Tansu 0.6 reports a partition's high watermark as the start of
//! its last batch + 1, so a reader reading "to the end" may stop inside a
//! last batch of chunks (not yet named by a manifest) or of tombstones
//! (whose chunks it then takes as still live and tombstones again), which
//! is harmless, but never skips a manifest.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use sha2::{Digest, Sha256};

pub use super::chunk::key;
use super::chunk::{Collector, Live, Restored, chunk_key, split};
use crate::pipeline::PipelineSnapshot;

/// A shard's state: the pipeline after evaluating every message below `offset`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ShardSnapshot {
    pub version: u32,
    pub topic: String,
    pub partition: i32,
    /// The next offset to evaluate.
    pub offset: i64,
    pub pipeline: PipelineSnapshot,
    /// By-key shards: per source partition (`topic/partition`), the highest
    /// source offset evaluated (duplicates at or below it are dropped) and
    /// the source's watermark.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sources: BTreeMap<String, SourceMark>,
}

/// What a by-key shard knows of one source partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SourceMark {
    pub offset: i64,
    pub watermark: i64,
}

const TIMEOUT: Duration = Duration::from_secs(30);
/// Default chunk size: well under the broker's default message limit (1 MB).
pub const DEFAULT_CHUNK: usize = 512 << 10;
/// Room for key, headers and batch overhead above a chunk.
const OVERHEAD: usize = 64 << 10;

pub struct StateStore {
    topic: String,
    base: ClientConfig,
    producer: BaseProducer,
    group: String,
    chunk: usize,
    /// Random per process: makes this process's generations unique.
    writer: String,
    /// Per shard key, what this process wrote or restored (only the
    /// consumer thread uses it; the lock is never contended).
    live: Mutex<HashMap<String, Live>>,
}

impl StateStore {
    pub fn new(
        base: ClientConfig,
        group: &str,
        topic: String,
        chunk: usize,
    ) -> Result<Self, String> {
        let chunk = chunk.max(1);
        let producer: BaseProducer = base
            .clone()
            .set("enable.idempotence", "false")
            .set("acks", "all")
            .set("linger.ms", "0")
            .set(
                "message.max.bytes",
                (chunk + OVERHEAD).max(1_000_000).to_string(),
            )
            .create()
            .map_err(|e| format!("kafka state producer: {e}"))?;
        Ok(StateStore {
            topic,
            base,
            producer,
            group: group.to_string(),
            chunk,
            writer: writer_id(),
            live: Mutex::new(HashMap::new()),
        })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Queues one record (`None`: a tombstone); [`StateStore::flush`]
    /// waits for the broker's acknowledgement.
    fn send(&self, key: &str, value: Option<&[u8]>) -> Result<(), String> {
        let mut r = BaseRecord::<str, [u8]>::to(&self.topic)
            .partition(0)
            .key(key);
        if let Some(v) = value {
            r = r.payload(v);
        }
        loop {
            match self.producer.send(r) {
                Ok(()) => return Ok(()),
                Err((e, back))
                    if e.rdkafka_error_code()
                        == Some(rdkafka::types::RDKafkaErrorCode::QueueFull) =>
                {
                    self.producer.poll(Duration::from_millis(50));
                    r = back;
                }
                Err((e, _)) => return Err(format!("state write {key}: {e}")),
            }
        }
    }

    fn flush(&self, what: &str) -> Result<(), String> {
        self.producer
            .flush(TIMEOUT)
            .map_err(|e| format!("state write {what}: {e}"))
    }

    /// Writes the snapshots: per shard its chunks, then its manifest (the
    /// snapshot is in place once that is acknowledged), then tombstones
    /// for the chunks it replaces. Returns the number of chunks written.
    pub fn write(&self, snaps: &[ShardSnapshot]) -> Result<usize, String> {
        let mut written = 0;
        for s in snaps {
            let body = serde_json::to_vec(s).map_err(|e| e.to_string())?;
            let k = key(&s.topic, s.partition);
            let prev = self
                .live
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&k)
                .cloned()
                .unwrap_or_default();
            let counter = prev.counter + 1;
            let generation = format!("g{counter}-{}", self.writer);
            let (manifest, chunks) = split(&body, self.chunk, &generation);
            let mut keys = BTreeSet::new();
            for (n, c) in (0u32..).zip(&chunks) {
                let ck = chunk_key(&k, &generation, n);
                self.send(&ck, Some(c))?;
                keys.insert(ck);
            }
            // Every chunk acknowledged before the manifest naming them is
            // sent; the manifest alone in its batch (see the module doc).
            self.flush(&k)?;
            let m = serde_json::to_vec(&manifest).map_err(|e| e.to_string())?;
            self.send(&k, Some(&m))?;
            self.flush(&k)?;
            written += chunks.len();
            // The new generation is in place: older chunks may go. A
            // failed tombstone only leaves garbage, tombstoned again at the
            // next snapshot.
            let stale = prev.chunk_keys;
            let gone = stale
                .iter()
                .try_for_each(|old| self.send(old, None))
                .and_then(|()| self.flush(&k));
            match gone {
                Ok(()) => {}
                Err(e) => {
                    tracing::warn!(shard = %k, error = %e, "Cannot tombstone old snapshot chunks; retried at the next snapshot");
                    keys.extend(stale);
                }
            }
            self.live.lock().unwrap_or_else(|p| p.into_inner()).insert(
                k,
                Live {
                    counter,
                    chunk_keys: keys,
                },
            );
        }
        Ok(written)
    }

    /// The latest snapshot of each wanted `topic/partition`, read from the
    /// beginning of the state topic to its end, and the total number of
    /// chunks they were read from.
    pub fn load(
        &self,
        wanted: &[(String, i32)],
    ) -> Result<(HashMap<String, ShardSnapshot>, u32), String> {
        let keys: Vec<String> = wanted.iter().map(|(t, p)| key(t, *p)).collect();
        let restored = self.read(&keys)?;
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        for k in &keys {
            live.remove(k);
        }
        let mut chunks = 0;
        let mut out = HashMap::new();
        for (k, r) in restored {
            chunks += r.chunks;
            live.insert(k.clone(), r.live);
            if let Some(s) = r.snapshot {
                out.insert(k, s);
            }
        }
        Ok((out, chunks))
    }

    fn read(&self, keys: &[String]) -> Result<HashMap<String, Restored>, String> {
        let mut col = Collector::new(keys);
        if keys.is_empty() {
            return col.finish();
        }
        let fetch = (self.chunk + OVERHEAD).max(1 << 20);
        let c: BaseConsumer = self
            .base
            .clone()
            .set("group.id", format!("{}.state-reader", self.group))
            .set("enable.auto.commit", "false")
            .set("fetch.message.max.bytes", fetch.to_string())
            .set(
                "receive.message.max.bytes",
                (fetch.max(52_428_800) + (1 << 20)).to_string(),
            )
            .create()
            .map_err(|e| format!("kafka state reader: {e}"))?;
        let (_lo, hi) = c
            .fetch_watermarks(&self.topic, 0, TIMEOUT)
            .map_err(|e| format!("state topic {}: {e}", self.topic))?;
        if hi <= 0 {
            return col.finish();
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, 0, Offset::Beginning)
            .map_err(|e| e.to_string())?;
        c.assign(&tpl).map_err(|e| e.to_string())?;
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if Instant::now() > deadline {
                return Err(format!(
                    "state topic {}: not read to its end ({hi}) in time",
                    self.topic
                ));
            }
            match c.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => {
                    let k = m.key().map(String::from_utf8_lossy).unwrap_or_default();
                    col.record(&k, m.payload())?;
                    if m.offset() + 1 >= hi {
                        return col.finish();
                    }
                }
                Some(Err(e)) => tracing::warn!(error = %e, "Reading the state topic"),
                None => {}
            }
        }
    }
}

/// 16 hex digits, different for every process (clock and pid mixed).
fn writer_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut h = Sha256::new();
    h.update(nanos.to_le_bytes());
    h.update(std::process::id().to_le_bytes());
    let d = h.finalize();
    let mut s = String::with_capacity(16);
    for b in &d[..8] {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writers_differ() {
        let a = writer_id();
        std::thread::sleep(Duration::from_millis(1));
        assert_eq!(a.len(), 16);
        assert_ne!(a, writer_id());
    }
}
