//! Kafka as the log (docs/scale-out.md): the `kind: kafka` source.
//!
//! Several tocsin daemons in one consumer group share a topic's partitions
//! the way Kafka Streams applications do. Each assigned partition is a
//! [`shard::Shard`]: its own [`crate::pipeline::Pipeline`] (sequencer and
//! keyed state). Kafka is the log, so these events skip tocsin's write-ahead
//! log; a shard's state and the input offset it covers are written to the
//! compacted topic `<group>.state` ([`state`]) at each checkpoint and when
//! the partition is revoked, and the group's offsets are committed only after
//! that. On assignment a shard restores its latest snapshot and skips what
//! it covers.
//!
//! Rules not keyed on `partitioned_by` are repartitioned ([`route`],
//! [`repartition`]): the input shards re-publish each event to an internal
//! topic `<group>.by-<key>` per distinct rule key, and those topics'
//! partitions are shards too (by-key shards, [`shard`]), in the same
//! consumer group.
//!
//! Snapshots are chunked ([`chunk`]) so that any size fits the broker's
//! message limit; rule reloads reach the shards through [`reload`].
//!
//! Layer: uses the pipeline, decode, outbox and metrics; the daemon wires it.

pub mod chunk;
pub mod consumer;
pub mod reload;
pub mod repartition;
pub mod route;
pub mod shard;
pub mod state;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::alert::Alert;
use crate::config::{Config, SourceConfig};

/// Called for every alert after the outbox took it (the daemon's
/// `/v1/alerts` view).
pub type AlertHook = Arc<dyn Fn(&Alert) + Send + Sync>;

/// Everything the Kafka runtime needs from the configuration, secrets
/// resolved.
#[derive(Clone)]
pub struct KafkaSettings {
    pub brokers: String,
    pub topics: Vec<String>,
    pub group: String,
    /// `earliest` or `latest`.
    pub start_at: String,
    pub partitioned_by: Vec<String>,
    /// librdkafka settings, passed through (secrets included, never logged).
    pub client: BTreeMap<String, String>,
    pub max_delay_ms: i64,
    pub idle_timeout_ms: Option<i64>,
    pub checkpoint_every: Duration,
    pub max_event_bytes: usize,
    pub max_future_ms: i64,
    pub default_notify: Vec<String>,
    /// Largest record of a shard snapshot in `<group>.state` ([`state`]).
    pub snapshot_chunk_bytes: usize,
}

/// Bounds of `snapshot_chunk` (the upper one: librdkafka's fetch limits).
const MIN_CHUNK: u64 = 64;
const MAX_CHUNK: u64 = 16 << 20;

/// A Kafka source's `start_at` (default `earliest`), or why it is neither
/// `earliest` nor `latest`. Also used when the config is read.
pub fn start_at(setting: Option<&str>) -> Result<&'static str, String> {
    match setting {
        None | Some("earliest") => Ok("earliest"),
        Some("latest") => Ok("latest"),
        Some(o) => Err(format!("start_at `{o}`: write `earliest` or `latest`")),
    }
}

/// Why a Kafka source cannot run without more `brokers`, `topics` or a
/// `group`. Also used when the config is read.
pub fn check_names(brokers: &[String], topics: &[String], group: &str) -> Result<(), String> {
    if brokers.is_empty() || topics.is_empty() || group.is_empty() {
        return Err("kafka source: `brokers`, `topics` and `group` must not be empty".into());
    }
    Ok(())
}

/// The `snapshot_chunk` setting in bytes (default when unset), or why it is
/// out of bounds. Also used by `tocsin check -c`.
pub fn chunk_bytes(setting: Option<u64>) -> Result<usize, String> {
    match setting {
        None => Ok(state::DEFAULT_CHUNK),
        Some(n) if (MIN_CHUNK..=MAX_CHUNK).contains(&n) => {
            Ok(usize::try_from(n).unwrap_or(state::DEFAULT_CHUNK))
        }
        Some(n) => Err(format!(
            "kafka source: snapshot_chunk {n} bytes: write a size from {MIN_CHUNK} bytes to 16MiB"
        )),
    }
}

impl KafkaSettings {
    /// The settings of one `kind: kafka` source, or `None` for another kind.
    pub fn from_config(cfg: &Config, src: &SourceConfig) -> Result<Option<Self>, String> {
        let SourceConfig::Kafka {
            brokers,
            topics,
            group,
            start_at,
            partitioned_by,
            client,
            client_env,
            client_file,
            snapshot_chunk,
        } = src
        else {
            return Ok(None);
        };
        check_names(brokers, topics, group)?;
        let start_at =
            self::start_at(start_at.as_deref()).map_err(|e| format!("kafka source: {e}"))?;
        let mut all = client.clone();
        for (k, var) in client_env {
            match std::env::var(var) {
                Ok(v) if !v.is_empty() => {
                    all.insert(k.clone(), v);
                }
                _ => {
                    return Err(format!(
                        "kafka source: client setting {k}: environment variable {var} is not set"
                    ));
                }
            }
        }
        for (k, path) in client_file {
            let v = std::fs::read_to_string(path).map_err(|e| {
                format!(
                    "kafka source: client setting {k}: cannot read {}: {e}",
                    path.display()
                )
            })?;
            all.insert(k.clone(), v.trim().to_string());
        }
        let snapshot_chunk_bytes = chunk_bytes(snapshot_chunk.map(|s| s.0))?;
        Ok(Some(KafkaSettings {
            brokers: brokers.join(","),
            topics: topics.clone(),
            group: group.clone(),
            start_at: start_at.to_string(),
            partitioned_by: partitioned_by.clone(),
            client: all,
            max_delay_ms: cfg.events.max_delay.0,
            idle_timeout_ms: cfg.events.idle_timeout.0,
            checkpoint_every: Duration::from_millis(
                u64::try_from(cfg.durability.checkpoint_every.map_or(30_000, |d| d.0))
                    .unwrap_or(30_000),
            ),
            max_event_bytes: usize::try_from(cfg.events.max_event_bytes.0).unwrap_or(usize::MAX),
            max_future_ms: cfg.events.max_future.0,
            default_notify: cfg.default_notify.clone(),
            snapshot_chunk_bytes,
        }))
    }

    /// The name of the compacted state topic.
    pub fn state_topic(&self) -> String {
        format!("{}.state", self.group)
    }

    /// A librdkafka configuration: brokers plus the passthrough settings.
    pub fn client_config(&self) -> rdkafka::ClientConfig {
        let mut c = rdkafka::ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        for (k, v) in &self.client {
            c.set(k, v);
        }
        c
    }
}

pub use consumer::spawn;

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(extra: &str) -> Result<Option<KafkaSettings>, String> {
        let text = format!(
            "rules: rules/\nsources:\n  - kind: kafka\n    brokers: [\"127.0.0.1:9092\"]\n    topics: [events]\n    group: g\n{extra}"
        );
        let cfg = Config::parse("t.yaml", &text).map_err(|e| e.to_string())?;
        KafkaSettings::from_config(&cfg, &cfg.sources[0])
    }

    #[test]
    fn snapshot_chunk_defaults_parses_sizes_and_is_bounded() {
        let s = |extra: &str| settings(extra).map(|s| s.map(|s| s.snapshot_chunk_bytes));
        assert_eq!(s(""), Ok(Some(state::DEFAULT_CHUNK)));
        assert_eq!(s("    snapshot_chunk: 256\n"), Ok(Some(256)));
        assert_eq!(s("    snapshot_chunk: 2MiB\n"), Ok(Some(2 << 20)));
        for bad in ["63", "17MiB"] {
            let e = s(&format!("    snapshot_chunk: {bad}\n")).unwrap_err();
            assert!(e.contains("snapshot_chunk"), "{e}");
        }
    }
}
