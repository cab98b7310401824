//! The chunk format of shard snapshots in `<group>.state` (pure: no IO;
//! [`super::state::StateStore`] writes and reads the records).
//!
//! Records of one shard `topic/partition` (docs/scale-out.md, "Snapshots"):
//! - chunks, key `<topic>/<partition>/<generation>/<n>`, value: bytes
//!   `n·size ..` of the snapshot JSON; a generation is `g<counter>-<writer>`
//!   (the writer is random per process, so two processes never write the
//!   same chunk key);
//! - the manifest, key `<topic>/<partition>`, written after every chunk of
//!   its generation is acknowledged: [`Manifest`] (generation, chunk count,
//!   length, SHA-256 of the whole JSON);
//! - tombstones (null value) for the chunks of older generations, written
//!   after the manifest that replaces them.
//!
//! Invariant, under compaction (which keeps the latest record per key, and
//! drops tombstones in time): the latest manifest's chunks are never
//! overwritten nor tombstoned, because chunk keys are never reused and
//! only chunks of generations older than an acknowledged manifest are
//! tombstoned. A crash at any point leaves either the previous manifest
//! with its chunks, or the new one with its chunks; leftover chunks of an
//! unfinished generation are tombstoned by the next owner's first write.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

use sha2::{Digest, Sha256};

use super::state::ShardSnapshot;

/// The manifest key of a shard: `topic/partition`.
pub fn key(topic: &str, partition: i32) -> String {
    format!("{topic}/{partition}")
}

/// The manifest of one snapshot generation, the value at `topic/partition`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// 2: chunked snapshots.
    pub version: u32,
    /// `g<counter>-<writer>`: names this generation's chunk keys.
    pub generation: String,
    pub chunks: u32,
    /// Length of the snapshot JSON.
    pub bytes: u64,
    /// Lower-case hex SHA-256 of the snapshot JSON.
    pub sha256: String,
}

const MANIFEST_VERSION: u32 = 2;

impl Manifest {
    /// The counter part of the generation (0 when unreadable).
    fn counter(&self) -> u64 {
        counter_of(&self.generation)
    }
}

pub(crate) fn counter_of(generation: &str) -> u64 {
    generation
        .strip_prefix('g')
        .and_then(|g| g.split('-').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

pub(crate) fn chunk_key(shard: &str, generation: &str, n: u32) -> String {
    format!("{shard}/{generation}/{n}")
}

pub(crate) fn sha256_hex(body: &[u8]) -> String {
    let mut s = String::with_capacity(64);
    for b in Sha256::digest(body).iter() {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Splits a snapshot body into chunks of at most `size` bytes (one empty
/// chunk for an empty body) and describes them.
pub fn split<'a>(body: &'a [u8], size: usize, generation: &str) -> (Manifest, Vec<&'a [u8]>) {
    let chunks: Vec<&[u8]> = if body.is_empty() {
        vec![body]
    } else {
        body.chunks(size.max(1)).collect()
    };
    let m = Manifest {
        version: MANIFEST_VERSION,
        generation: generation.to_string(),
        chunks: u32::try_from(chunks.len()).unwrap_or(u32::MAX),
        bytes: body.len() as u64,
        sha256: sha256_hex(body),
    };
    (m, chunks)
}

/// Reassembles the body a manifest names from its generation's chunks
/// (chunk number → bytes), checking count, length and checksum.
pub fn reassemble(m: &Manifest, chunks: &BTreeMap<u32, Vec<u8>>) -> Result<Vec<u8>, String> {
    let mut body = Vec::with_capacity(usize::try_from(m.bytes).unwrap_or(0));
    for n in 0..m.chunks {
        let c = chunks
            .get(&n)
            .ok_or_else(|| format!("chunk {n} of {} missing", m.chunks))?;
        body.extend_from_slice(c);
    }
    if body.len() as u64 != m.bytes {
        return Err(format!("{} bytes, manifest says {}", body.len(), m.bytes));
    }
    if sha256_hex(&body) != m.sha256 {
        return Err("checksum mismatch".into());
    }
    Ok(body)
}

/// What the state topic holds for one shard, read in log order: the latest
/// manifest and every live (not tombstoned) chunk, by generation.
#[derive(Debug, Default)]
struct Found {
    manifest: Option<Manifest>,
    chunks: BTreeMap<String, BTreeMap<u32, Vec<u8>>>,
}

/// Folds the records of the state topic, in log order, into the latest
/// snapshot of each wanted shard.
#[derive(Debug, Default)]
pub struct Collector {
    found: HashMap<String, Found>,
}

/// One shard's restore: its snapshot and the chunk keys to tombstone at
/// the next write (every live chunk key, current generation included).
#[derive(Debug)]
pub struct Restored {
    /// `None`: only chunks of an unfinished first generation were found.
    pub snapshot: Option<ShardSnapshot>,
    pub chunks: u32,
    pub(crate) live: Live,
}

impl Restored {
    fn none(live: Live) -> Self {
        Restored {
            snapshot: None,
            chunks: 0,
            live,
        }
    }
}

impl Collector {
    pub fn new(wanted: &[String]) -> Self {
        Collector {
            found: wanted
                .iter()
                .map(|k| (k.clone(), Found::default()))
                .collect(),
        }
    }

    /// One record (`None`: a tombstone). Records of other shards are ignored.
    pub fn record(&mut self, key: &str, value: Option<&[u8]>) -> Result<(), String> {
        if let Some(f) = self.found.get_mut(key) {
            f.manifest = match value {
                None => None,
                Some(v) => Some(
                    serde_json::from_slice(v)
                        .map_err(|e| format!("unreadable snapshot manifest {key}: {e}"))?,
                ),
            };
            return Ok(());
        }
        // `<shard>/<generation>/<n>`: the shard key itself has one `/`.
        let mut it = key.rsplitn(3, '/');
        let (Some(n), Some(generation), Some(shard)) = (it.next(), it.next(), it.next()) else {
            return Ok(());
        };
        let (Some(f), Ok(n)) = (self.found.get_mut(shard), n.parse::<u32>()) else {
            return Ok(());
        };
        match value {
            Some(v) => {
                f.chunks
                    .entry(generation.to_string())
                    .or_default()
                    .insert(n, v.to_vec());
            }
            None => {
                if let Some(g) = f.chunks.get_mut(generation) {
                    g.remove(&n);
                    if g.is_empty() {
                        f.chunks.remove(generation);
                    }
                }
            }
        }
        Ok(())
    }

    /// The latest snapshot of each wanted shard that has one. A manifest
    /// whose chunks are missing or do not match is an error: restoring
    /// nothing instead would evaluate from committed offsets without state.
    pub fn finish(self) -> Result<HashMap<String, Restored>, String> {
        let mut out = HashMap::new();
        for (k, f) in self.found {
            let shard = k.as_str();
            let live_keys: BTreeSet<String> = f
                .chunks
                .iter()
                .flat_map(|(g, cs)| cs.keys().map(move |n| chunk_key(shard, g, *n)))
                .collect();
            let Some(m) = f.manifest else {
                // Chunks of a first generation whose manifest never came.
                if !live_keys.is_empty() {
                    let live = Live {
                        counter: 0,
                        chunk_keys: live_keys,
                    };
                    out.insert(k, Restored::none(live));
                }
                continue;
            };
            let empty = BTreeMap::new();
            let body = reassemble(&m, f.chunks.get(&m.generation).unwrap_or(&empty))
                .map_err(|e| format!("snapshot {k} generation {}: {e}", m.generation))?;
            let snapshot: ShardSnapshot = serde_json::from_slice(&body)
                .map_err(|e| format!("snapshot {k} generation {}: {e}", m.generation))?;
            out.insert(
                k,
                Restored {
                    snapshot: Some(snapshot),
                    chunks: m.chunks,
                    live: Live {
                        counter: m.counter(),
                        chunk_keys: live_keys,
                    },
                },
            );
        }
        Ok(out)
    }
}

/// What this process knows it left in the state topic for one shard.
#[derive(Debug, Clone, Default)]
pub(crate) struct Live {
    /// The counter of the latest generation.
    pub(crate) counter: u64,
    /// Live chunk keys: tombstoned once a newer manifest is acknowledged.
    pub(crate) chunk_keys: BTreeSet<String>,
}

#[cfg(test)]
mod tests {
    use super::super::state::SourceMark;
    use super::*;

    fn snap(partition: i32, offset: i64, filler: usize) -> ShardSnapshot {
        let mut sources = BTreeMap::new();
        // Make the JSON as large as wanted.
        for i in 0..filler {
            sources.insert(
                format!("in/{i}"),
                SourceMark {
                    offset: i as i64,
                    watermark: 1000 + i as i64,
                },
            );
        }
        ShardSnapshot {
            version: 1,
            topic: "events".into(),
            partition,
            offset,
            pipeline: crate::pipeline::Pipeline::new(&crate::lang::Program::default(), 0)
                .snapshot(),
            sources,
        }
    }

    #[test]
    fn split_and_reassemble_round_trip_and_detect_damage() {
        let body: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        for size in [1, 7, 1000, 9_999, 10_000, 10_001, 1 << 20] {
            let (m, chunks) = split(&body, size, "g1-x");
            assert_eq!(m.chunks as usize, body.len().div_ceil(size));
            assert!(chunks.iter().all(|c| c.len() <= size));
            let map: BTreeMap<u32, Vec<u8>> =
                (0u32..).zip(chunks.iter().map(|c| c.to_vec())).collect();
            assert_eq!(reassemble(&m, &map).unwrap(), body);
        }
        let (m, chunks) = split(&body, 3000, "g1-x");
        let mut map: BTreeMap<u32, Vec<u8>> =
            (0u32..).zip(chunks.iter().map(|c| c.to_vec())).collect();
        let last = map.remove(&3).unwrap();
        assert_eq!(reassemble(&m, &map).unwrap_err(), "chunk 3 of 4 missing");
        let mut bad = last.clone();
        bad[0] ^= 1;
        map.insert(3, bad);
        assert_eq!(reassemble(&m, &map).unwrap_err(), "checksum mismatch");
        map.insert(3, last[..10].to_vec());
        assert!(
            reassemble(&m, &map)
                .unwrap_err()
                .contains("bytes, manifest says")
        );
        let (m, chunks) = split(b"", 10, "g1-x");
        assert_eq!((m.chunks, chunks.len()), (1, 1));
        assert_eq!(
            reassemble(&m, &BTreeMap::from([(0, Vec::new())])).unwrap(),
            b""
        );
    }

    /// The records `StateStore::write` makes for a sequence of snapshots,
    /// as (key, value) in log order.
    fn log_of(gens: &[(ShardSnapshot, usize)]) -> Vec<(String, Option<Vec<u8>>)> {
        let mut log = Vec::new();
        let mut live: BTreeSet<String> = BTreeSet::new();
        for (i, (s, size)) in gens.iter().enumerate() {
            let k = key(&s.topic, s.partition);
            let generation = format!("g{}-w", i + 1);
            let body = serde_json::to_vec(s).unwrap();
            let (m, chunks) = split(&body, *size, &generation);
            let mut keys = BTreeSet::new();
            for (n, c) in (0u32..).zip(&chunks) {
                let ck = chunk_key(&k, &generation, n);
                log.push((ck.clone(), Some(c.to_vec())));
                keys.insert(ck);
            }
            log.push((k, Some(serde_json::to_vec(&m).unwrap())));
            for old in std::mem::take(&mut live) {
                log.push((old, None));
            }
            live = keys;
        }
        log
    }

    /// Kafka compaction: the latest record per key, in offset order, and
    /// tombstones dropped.
    fn compact(log: &[(String, Option<Vec<u8>>)]) -> Vec<(String, Option<Vec<u8>>)> {
        let last: HashMap<&str, usize> = log
            .iter()
            .enumerate()
            .map(|(i, (k, _))| (k.as_str(), i))
            .collect();
        log.iter()
            .enumerate()
            .filter(|(i, (k, v))| last[k.as_str()] == *i && v.is_some())
            .map(|(_, r)| r.clone())
            .collect()
    }

    fn restore(log: &[(String, Option<Vec<u8>>)]) -> Option<(i64, usize)> {
        let mut c = Collector::new(&["events/0".to_string()]);
        for (k, v) in log {
            c.record(k, v.as_deref()).unwrap();
        }
        let r = c.finish().unwrap().remove("events/0")?;
        Some((r.snapshot?.offset, r.live.chunk_keys.len()))
    }

    /// A crash after any record, with or without compaction, restores the
    /// last snapshot whose manifest was written, never a mix; a smaller
    /// snapshot after a larger one leaves no stale chunk alive.
    #[test]
    fn restore_survives_crashes_and_compaction_at_every_record() {
        // Offsets 10, 20, 30; the middle one large (many chunks).
        let gens = [
            (snap(0, 10, 3), 64),
            (snap(0, 20, 60), 64),
            (snap(0, 30, 1), 64),
        ];
        let log = log_of(&gens);
        let other = Collector::new(&["events/1".to_string()]);
        assert!(other.finish().unwrap().is_empty());
        for cut in 0..=log.len() {
            let prefix = &log[..cut];
            // The latest manifest in the prefix decides.
            let want = prefix
                .iter()
                .rev()
                .find(|(k, _)| k == "events/0")
                .map(|(_, v)| serde_json::from_slice::<Manifest>(v.as_ref().unwrap()).unwrap())
                .map(|m| [10, 20, 30][m.counter() as usize - 1]);
            assert_eq!(restore(prefix).map(|r| r.0), want, "cut at {cut}");
            assert_eq!(
                restore(&compact(prefix)).map(|r| r.0),
                want,
                "cut at {cut}, compacted"
            );
        }
        // At the end only the last generation's chunks are alive.
        let (_, live) = restore(&compact(&log)).unwrap();
        let (m, _) = split(&serde_json::to_vec(&gens[2].0).unwrap(), 64, "g3-w");
        assert_eq!(live, m.chunks as usize);
        // Chunks without any manifest yet: no snapshot, but their keys are
        // known, to be tombstoned by the next write.
        let mut c = Collector::new(&["events/0".to_string()]);
        c.record("events/0/g1-w/0", Some(b"{")).unwrap();
        let r = c.finish().unwrap().remove("events/0").unwrap();
        assert!(r.snapshot.is_none());
        assert_eq!(r.live.chunk_keys.len(), 1);
        // Records of other shards, and foreign keys, are ignored.
        let mut c = Collector::new(&["events/0".to_string()]);
        c.record("events/00/g1-w/0", Some(b"x")).unwrap();
        c.record("weird", Some(b"x")).unwrap();
        c.record("a/b/c/d/e", None).unwrap();
        assert!(c.finish().unwrap().is_empty());
    }

    #[test]
    fn a_manifest_without_its_chunks_is_an_error() {
        let log = log_of(&[(snap(0, 10, 5), 32)]);
        let mut c = Collector::new(&["events/0".to_string()]);
        // Drop the first chunk.
        for (k, v) in &log[1..] {
            c.record(k, v.as_deref()).unwrap();
        }
        let e = c.finish().unwrap_err();
        assert!(
            e.contains("chunk 0 of") && e.contains("generation g1-w"),
            "{e}"
        );
        let mut c = Collector::new(&["events/0".to_string()]);
        assert!(c.record("events/0", Some(b"{}")).is_err());
    }

    #[test]
    fn generations_count() {
        assert_eq!(counter_of("g17-abc"), 17);
        assert_eq!(counter_of("junk"), 0);
    }
}
