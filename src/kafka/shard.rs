//! One shard: the pipeline of one partition and the offset it covers.
//!
//! An *input* shard reads a partition of an input topic: its pipeline runs
//! the rules keyed on `partitioned_by`, and its sequencer's watermark is the
//! partition's watermark. A *by-key* shard reads a partition of an internal
//! `<group>.by-<key>` topic ([`super::route`]): events re-published from
//! every input partition, each message carrying its source partition, source
//! offset and the source's watermark after the event. Its pipeline runs the
//! rules of that key; its watermark is the smallest watermark over all input
//! partitions, so interleaving the partitions makes no event late that was
//! on time in its own partition, and re-published duplicates (source offset
//! not above the highest seen from that source) are dropped.

use std::collections::BTreeMap;

use crate::alert::Alert;
use crate::event::{Event, EventTime};
use crate::lang::Program;
use crate::pipeline::Pipeline;
use crate::sequencer::Late;

use super::state::{ShardSnapshot, SourceMark};

pub struct Shard {
    pub topic: String,
    pub partition: i32,
    pub pipeline: Pipeline,
    /// The next offset to evaluate; everything below is in the state.
    pub next_offset: i64,
    /// Wall-clock time of the last accepted event (idle advance).
    pub last_accept: EventTime,
    /// Whether the state changed since the last snapshot written.
    pub dirty: bool,
    /// Events evaluated by this instance (metrics, tests).
    pub evaluated: u64,
    /// By-key shards only: per source partition (`topic/partition`), the
    /// highest source offset evaluated and the source's watermark.
    pub by_key: Option<BTreeMap<String, SourceMark>>,
}

/// What became of a message of a by-key topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keyed {
    Evaluated,
    Late,
    Duplicate,
    Marker,
}

impl Shard {
    /// A shard of an input partition.
    pub fn input(program: &Program, max_delay_ms: i64, topic: &str, partition: i32) -> Self {
        Self::with(Pipeline::new(program, max_delay_ms), topic, partition, None)
    }

    /// A shard of a by-key partition. Its sequencer's own delay is the
    /// largest possible, so it never moves the watermark to a real event
    /// time by itself: the sources' watermarks do, through
    /// [`Shard::offer_keyed`].
    pub fn by_key(program: &Program, topic: &str, partition: i32) -> Self {
        Self::with(
            Pipeline::new(program, i64::MAX),
            topic,
            partition,
            Some(BTreeMap::new()),
        )
    }

    fn with(
        pipeline: Pipeline,
        topic: &str,
        partition: i32,
        by_key: Option<BTreeMap<String, SourceMark>>,
    ) -> Self {
        Shard {
            topic: topic.to_string(),
            partition,
            pipeline,
            next_offset: 0,
            last_accept: crate::source::now(),
            dirty: false,
            evaluated: 0,
            by_key,
        }
    }

    pub fn restore(&mut self, snap: &ShardSnapshot) {
        self.pipeline.restore(&snap.pipeline);
        self.next_offset = snap.offset;
        if let Some(m) = self.by_key.as_mut() {
            *m = snap.sources.clone();
        }
    }

    pub fn snapshot(&self) -> ShardSnapshot {
        ShardSnapshot {
            version: 1,
            topic: self.topic.clone(),
            partition: self.partition,
            offset: self.next_offset,
            pipeline: self.pipeline.snapshot(),
            sources: self.by_key.clone().unwrap_or_default(),
        }
    }

    /// Whether the message at `offset` is already covered by the state (a
    /// redelivery after a restore from a snapshot newer than the commit).
    pub fn covers(&self, offset: i64) -> bool {
        offset < self.next_offset
    }

    /// Evaluates the message at `offset` of an input partition (`None`:
    /// rejected or blank, it only moves the offset). Alerts it makes due
    /// are appended to `out`.
    pub fn offer(
        &mut self,
        offset: i64,
        ev: Option<Event>,
        wall: EventTime,
        out: &mut Vec<Alert>,
    ) -> Result<(), Late> {
        self.next_offset = offset + 1;
        self.dirty = true;
        let Some(ev) = ev else { return Ok(()) };
        self.evaluated += 1;
        let r = self.pipeline.push(ev, out);
        if r.is_ok() {
            self.last_accept = wall;
        }
        r
    }

    /// Evaluates the message at `offset` of a by-key partition: from source
    /// `src`, either an event (`Some((source offset, event))`; the event is
    /// `None` if it no longer decodes) or a watermark marker (`None`), and
    /// the source's watermark after it. The shard's watermark then moves to
    /// the smallest watermark over `sources` (every input partition) and the
    /// sources seen.
    pub fn offer_keyed(
        &mut self,
        offset: i64,
        src: &str,
        event: Option<(i64, Option<Event>)>,
        src_watermark: i64,
        sources: &[String],
        out: &mut Vec<Alert>,
    ) -> Keyed {
        self.next_offset = offset + 1;
        self.dirty = true;
        let Some(marks) = self.by_key.as_mut() else {
            return Keyed::Marker;
        };
        let mark = marks.entry(src.to_string()).or_insert(SourceMark {
            offset: -1,
            watermark: i64::MIN,
        });
        let mut outcome = Keyed::Marker;
        if let Some((src_offset, ev)) = event {
            if src_offset <= mark.offset {
                return Keyed::Duplicate;
            }
            mark.offset = src_offset;
            outcome = Keyed::Evaluated;
            if let Some(ev) = ev {
                self.evaluated += 1;
                if self.pipeline.push(ev, out).is_err() {
                    outcome = Keyed::Late;
                }
            }
        }
        mark.watermark = mark.watermark.max(src_watermark);
        let w = sources
            .iter()
            .map(|s| marks.get(s).map_or(i64::MIN, |m| m.watermark))
            .chain(marks.values().map(|m| m.watermark))
            .min()
            .unwrap_or(i64::MIN);
        if w > self.pipeline.watermark().0 {
            self.pipeline.advance(EventTime(w), out);
        }
        outcome
    }

    /// Idle advance on this partition alone, from the wall clock (input
    /// shards; by-key shards follow their sources' watermarks).
    pub fn idle_advance(
        &mut self,
        wall: EventTime,
        idle_ms: i64,
        max_delay_ms: i64,
        out: &mut Vec<Alert>,
    ) {
        if self.by_key.is_some() {
            return;
        }
        let target = wall.saturating_sub(max_delay_ms);
        if wall.millis().saturating_sub(self.last_accept.millis()) >= idle_ms
            && target > self.pipeline.watermark()
        {
            self.pipeline.advance(target, out);
            self.dirty = true;
        }
    }

    /// Live keys over the shard's rules.
    pub fn keys(&self) -> usize {
        self.pipeline.key_counts().iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(t: i64, raw: &str) -> Event {
        Event {
            stream: "auth".into(),
            time: EventTime(t),
            // The text is a JSON string: only its order matters here.
            fields: crate::event::Doc::parse(&serde_json::Value::from(raw).to_string())
                .expect("a JSON string"),
        }
    }

    #[test]
    fn by_key_watermark_is_the_smallest_source_watermark_and_duplicates_drop() {
        let sources = ["in/0".to_string(), "in/1".to_string()];
        let mut sh = Shard::by_key(&Program::default(), "g.by-x", 0);
        let mut out = Vec::new();
        // Source 0 far ahead: nothing released while source 1 is unknown.
        assert_eq!(
            sh.offer_keyed(
                0,
                "in/0",
                Some((5, Some(ev(9000, "a")))),
                9000,
                &sources,
                &mut out
            ),
            Keyed::Evaluated
        );
        assert!(sh.pipeline.watermark() < EventTime(0));
        // An older event of source 1 is on time: W follows source 1.
        assert_eq!(
            sh.offer_keyed(
                1,
                "in/1",
                Some((3, Some(ev(1000, "b")))),
                1000,
                &sources,
                &mut out
            ),
            Keyed::Evaluated
        );
        assert_eq!(sh.pipeline.watermark(), EventTime(1000));
        // Re-published messages of source 0 are dropped.
        assert_eq!(
            sh.offer_keyed(
                2,
                "in/0",
                Some((5, Some(ev(9000, "a")))),
                9000,
                &sources,
                &mut out
            ),
            Keyed::Duplicate
        );
        // A marker moves source 1 on.
        assert_eq!(
            sh.offer_keyed(3, "in/1", None, 20_000, &sources, &mut out),
            Keyed::Marker
        );
        assert_eq!(sh.pipeline.watermark(), EventTime(9000));
        // Restored from a snapshot, the marks come back.
        let snap = sh.snapshot();
        let mut again = Shard::by_key(&Program::default(), "g.by-x", 0);
        again.restore(&snap);
        assert_eq!(again.next_offset, 4);
        assert_eq!(
            again.offer_keyed(
                4,
                "in/0",
                Some((4, Some(ev(8000, "c")))),
                9000,
                &sources,
                &mut out
            ),
            Keyed::Duplicate
        );
    }
}
