//! One shard: the pipeline of one input partition and the offset it covers.

use crate::alert::Alert;
use crate::event::{Event, EventTime};
use crate::lang::Program;
use crate::pipeline::Pipeline;
use crate::sequencer::Late;

use super::state::ShardSnapshot;

pub struct Shard {
    pub topic: String,
    pub partition: i32,
    pub pipeline: Pipeline,
    /// The next input offset to evaluate; everything below is in the state.
    pub next_offset: i64,
    /// Wall-clock time of the last accepted event (idle advance).
    pub last_accept: EventTime,
    /// Whether the state changed since the last snapshot written.
    pub dirty: bool,
    /// Events evaluated by this instance (metrics, tests).
    pub evaluated: u64,
}

impl Shard {
    pub fn new(program: &Program, max_delay_ms: i64, topic: &str, partition: i32) -> Self {
        Shard {
            topic: topic.to_string(),
            partition,
            pipeline: Pipeline::new(program, max_delay_ms),
            next_offset: 0,
            last_accept: crate::source::now(),
            dirty: false,
            evaluated: 0,
        }
    }

    pub fn restore(&mut self, snap: &ShardSnapshot) {
        self.pipeline.restore(&snap.pipeline);
        self.next_offset = snap.offset;
    }

    pub fn snapshot(&self) -> ShardSnapshot {
        ShardSnapshot {
            version: 1,
            topic: self.topic.clone(),
            partition: self.partition,
            offset: self.next_offset,
            pipeline: self.pipeline.snapshot(),
        }
    }

    /// Whether the message at `offset` is already covered by the state (a
    /// redelivery after a restore from a snapshot newer than the commit).
    pub fn covers(&self, offset: i64) -> bool {
        offset < self.next_offset
    }

    /// Evaluates the message at `offset` (`None`: rejected or blank, it only
    /// moves the offset). Alerts it makes due are appended to `out`.
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

    /// Idle advance on this partition alone, from the wall clock.
    pub fn idle_advance(
        &mut self,
        wall: EventTime,
        idle_ms: i64,
        max_delay_ms: i64,
        out: &mut Vec<Alert>,
    ) {
        let target = wall.saturating_sub(max_delay_ms);
        if wall.millis().saturating_sub(self.last_accept.millis()) >= idle_ms
            && target > self.pipeline.watermark()
        {
            self.pipeline.advance(target, out);
            self.dirty = true;
        }
    }
}
