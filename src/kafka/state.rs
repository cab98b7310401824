//! Shard snapshots in the compacted topic `<group>.state`, keyed by
//! `topic/partition`. One partition, one record per snapshot (each flushed
//! on its own, so every record is its own batch), JSON.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

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

pub fn key(topic: &str, partition: i32) -> String {
    format!("{topic}/{partition}")
}

const TIMEOUT: Duration = Duration::from_secs(30);
/// Largest snapshot record (librdkafka's `message.max.bytes` is set to it).
pub const MAX_SNAPSHOT: usize = 64 << 20;

pub struct StateStore {
    topic: String,
    base: ClientConfig,
    producer: BaseProducer,
    group: String,
}

impl StateStore {
    pub fn new(base: ClientConfig, group: &str, topic: String) -> Result<Self, String> {
        let producer: BaseProducer = base
            .clone()
            .set("enable.idempotence", "false")
            .set("acks", "all")
            .set("linger.ms", "0")
            .set("message.max.bytes", MAX_SNAPSHOT.to_string())
            .create()
            .map_err(|e| format!("kafka state producer: {e}"))?;
        Ok(StateStore {
            topic,
            base,
            producer,
            group: group.to_string(),
        })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Writes the snapshots, each acknowledged before the next one.
    pub fn write(&self, snaps: &[ShardSnapshot]) -> Result<(), String> {
        for s in snaps {
            let body = serde_json::to_vec(s).map_err(|e| e.to_string())?;
            if body.len() > MAX_SNAPSHOT {
                return Err(format!(
                    "snapshot of {} is {} bytes, over {MAX_SNAPSHOT}",
                    key(&s.topic, s.partition),
                    body.len()
                ));
            }
            let k = key(&s.topic, s.partition);
            self.producer
                .send(
                    BaseRecord::to(&self.topic)
                        .partition(0)
                        .key(&k)
                        .payload(&body),
                )
                .map_err(|(e, _)| format!("state write {k}: {e}"))?;
            self.producer
                .flush(TIMEOUT)
                .map_err(|e| format!("state write {k}: {e}"))?;
        }
        Ok(())
    }

    /// The latest snapshot of each wanted `topic/partition`, read from the
    /// beginning of the state topic to its end.
    pub fn load(&self, wanted: &[(String, i32)]) -> Result<HashMap<String, ShardSnapshot>, String> {
        let mut out = HashMap::new();
        if wanted.is_empty() {
            return Ok(out);
        }
        let c: BaseConsumer = self
            .base
            .clone()
            .set("group.id", format!("{}.state-reader", self.group))
            .set("enable.auto.commit", "false")
            .set("fetch.message.max.bytes", MAX_SNAPSHOT.to_string())
            .set(
                "receive.message.max.bytes",
                (MAX_SNAPSHOT + (1 << 20)).to_string(),
            )
            .create()
            .map_err(|e| format!("kafka state reader: {e}"))?;
        let (_lo, hi) = c
            .fetch_watermarks(&self.topic, 0, TIMEOUT)
            .map_err(|e| format!("state topic {}: {e}", self.topic))?;
        if hi <= 0 {
            return Ok(out);
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, 0, Offset::Beginning)
            .map_err(|e| e.to_string())?;
        c.assign(&tpl).map_err(|e| e.to_string())?;
        let keys: Vec<String> = wanted.iter().map(|(t, p)| key(t, *p)).collect();
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
                    if keys.iter().any(|w| *w == k)
                        && let Some(p) = m.payload()
                    {
                        match serde_json::from_slice::<ShardSnapshot>(p) {
                            Ok(s) => {
                                out.insert(k.into_owned(), s);
                            }
                            Err(e) => {
                                tracing::warn!(key = %k, offset = m.offset(), error = %e, "Unreadable shard snapshot; ignored")
                            }
                        }
                    }
                    if m.offset() + 1 >= hi {
                        return Ok(out);
                    }
                }
                Some(Err(e)) => tracing::warn!(error = %e, "Reading the state topic"),
                None => {}
            }
        }
    }
}
