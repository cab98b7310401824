//! Which rules run where (docs/scale-out.md, "Repartitioning").
//!
//! A rule whose key contains every `partitioned_by` field sees all events of
//! one of its keys in one input partition, so it runs on the input topic's
//! shards. Every other rule is *repartitioned*: each event is re-published to
//! the internal topic `<group>.by-<key>` of the rule's key (message key = the
//! rule key's value as compact JSON), and the rule runs on that topic's
//! shards. Rules with equal key names share a topic; rules without a key run
//! on the single-partition topic `<group>.by-global`.

use std::collections::BTreeSet;

use crate::event::Event;
use crate::lang::Program;
use crate::lang::program::{KeyExpr, Rule};

/// The rules of one internal by-key topic.
#[derive(Clone)]
pub struct KeyGroup {
    /// `<group>.by-<key>`.
    pub topic: String,
    /// The key names (canonical text of the key expressions), in order.
    pub names: Vec<String>,
    /// The key expressions (equal for every rule of the group).
    pub key: Vec<KeyExpr>,
    /// The rules, in rule order.
    pub program: Program,
    /// Streams the rules read; `None` when one reads every stream (`*`).
    pub streams: Option<BTreeSet<String>>,
    /// Partition count of the topic (1 for the global key); set when the
    /// topic is known to exist.
    pub partitions: i32,
}

impl KeyGroup {
    pub fn is_global(&self) -> bool {
        self.names.is_empty()
    }

    /// Whether an event may matter to a rule of the group.
    pub fn reads(&self, ev: &Event) -> bool {
        self.streams
            .as_ref()
            .is_none_or(|s| s.contains(ev.stream.as_str()))
    }

    /// The message key of an event (the rule key as compact JSON text, e.g.
    /// `{"service":"api"}`), or `None` when a key expression is null: the
    /// rules skip the event (`key_missing`), so it is not published.
    pub fn key_of(&self, ev: &Event) -> Option<crate::engine::Key> {
        crate::engine::key::key_of(&self.key, &ev.fields)
    }

    /// The partition of a message key: murmur2 as Kafka's default
    /// partitioner, so every instance (and any Java client) agrees.
    pub fn partition_of(&self, key: &str) -> i32 {
        if self.partitions <= 1 {
            return 0;
        }
        let h = murmur2(key.as_bytes()) & 0x7fff_ffff;
        (h % self.partitions as u32) as i32
    }
}

/// Where each rule runs.
#[derive(Clone)]
pub struct Plan {
    /// Rules that run on the input topics' shards.
    pub local: Program,
    /// Repartitioned rules, one entry per by-key topic, sorted by topic.
    pub groups: Vec<KeyGroup>,
}

impl Plan {
    pub fn new(program: &Program, partitioned_by: &[String], group: &str) -> Plan {
        let mut local = Program::default();
        let mut groups: Vec<KeyGroup> = Vec::new();
        for r in &program.rules {
            if co_partitioned(r, partitioned_by) {
                local.rules.push(r.clone());
                continue;
            }
            let names: Vec<String> = r.key.iter().map(|k| k.name.clone()).collect();
            let g = match groups.iter_mut().position(|g| g.names == names) {
                Some(i) => &mut groups[i],
                None => {
                    groups.push(KeyGroup {
                        topic: by_key_topic(group, &names),
                        names,
                        key: r.key.clone(),
                        program: Program::default(),
                        streams: Some(BTreeSet::new()),
                        partitions: 1,
                    });
                    groups.last_mut().expect("just pushed")
                }
            };
            g.program.rules.push(r.clone());
            for s in r.streams() {
                match (s, g.streams.as_mut()) {
                    (None, _) => g.streams = None,
                    (Some(s), Some(set)) => {
                        set.insert(s.to_string());
                    }
                    (Some(_), None) => {}
                }
            }
        }
        groups.sort_by(|a, b| a.topic.cmp(&b.topic));
        Plan { local, groups }
    }

    pub fn group_of(&self, topic: &str) -> Option<&KeyGroup> {
        self.groups.iter().find(|g| g.topic == topic)
    }
}

/// Whether every event of one key of `rule` is in one input partition: its
/// key names contain every `partitioned_by` field. Nothing is co-partitioned
/// when `partitioned_by` is empty (the producers' key is unknown).
pub fn co_partitioned(rule: &Rule, partitioned_by: &[String]) -> bool {
    !partitioned_by.is_empty()
        && partitioned_by
            .iter()
            .all(|f| rule.key.iter().any(|k| &k.name == f))
}

/// `<group>.by-<key>`: the key names joined by `-` when they are plain
/// names (letters, digits, `_`, `.`), else a legal rendering of them plus a
/// hash of the exact names; `<group>.by-global` for no key.
pub fn by_key_topic(group: &str, names: &[String]) -> String {
    if names.is_empty() {
        return format!("{group}.by-global");
    }
    let plain = names.iter().all(|n| {
        !n.is_empty()
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
    });
    let joined = names.join("-");
    if plain && joined != "global" && joined.len() <= 100 {
        return format!("{group}.by-{joined}");
    }
    let legal: String = joined
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect();
    let mut h: u32 = 0x811c_9dc5;
    for b in names.join("\u{0}").bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    format!("{group}.by-{legal}-{h:08x}")
}

/// Kafka's murmur2 (the Java client's default partitioner hash).
pub fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = SEED ^ (len as u32);
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() == 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn program(text: &str) -> Program {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("t.rules"), text).unwrap();
        let l =
            crate::lang::load_locations(&[dir.path().to_path_buf()], &Default::default()).unwrap();
        assert!(!l.has_errors(), "{}", l.render());
        l.program
    }

    #[test]
    fn murmur2_matches_kafka() {
        // Values from Kafka's UtilsTest.testMurmur2.
        assert_eq!(murmur2(b"21") as i32, -973932308);
        assert_eq!(murmur2(b"foobar") as i32, -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string") as i32, -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string") as i32, -1486304829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") as i32,
            -58897971
        );
        assert_eq!(murmur2(b"abc") as i32, 479470107);
    }

    #[test]
    fn rules_keyed_otherwise_are_grouped_by_key_names() {
        let p = program(
            r#"
rule a { key user from auth where outcome == "failure" window sliding 1m when count() >= 3 }
rule b { key service from auth absent 5m }
rule c { key service from http absent 1m }
rule d { from auth window tumbling 10m when count() >= 100 }
rule e { key user, host from * absent 1m }
rule f { key lower(path) from http absent 1m }
"#,
        );
        let plan = Plan::new(&p, &["user".to_string()], "g");
        let local: Vec<_> = plan.local.rules.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(local, ["a", "e"]);
        let groups: Vec<_> = plan
            .groups
            .iter()
            .map(|g| {
                (
                    g.topic.as_str(),
                    g.program
                        .rules
                        .iter()
                        .map(|r| r.name.as_str())
                        .collect::<Vec<_>>(),
                    g.streams.clone().map(|s| s.into_iter().collect::<Vec<_>>()),
                )
            })
            .collect();
        assert_eq!(groups[0].0, "g.by-global");
        assert_eq!(groups[0].1, ["d"]);
        assert!(
            groups[1].0.starts_with("g.by-lower_path_-"),
            "{}",
            groups[1].0
        );
        assert_eq!(groups[2].0, "g.by-service");
        assert_eq!(groups[2].1, ["b", "c"]);
        assert_eq!(
            groups[2].2,
            Some(vec!["auth".to_string(), "http".to_string()])
        );
        // Without partitioned_by, every rule is repartitioned.
        let plan = Plan::new(&p, &[], "g");
        assert!(plan.local.rules.is_empty());
        assert_eq!(plan.groups.len(), 5);
    }
}
