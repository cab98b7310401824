//! The synchronous core shared by `run`, `replay` and `test`: events in,
//! alerts out. Sequencer → engine → alert stage, interleaving released
//! events and timers exactly as rule-language.md 2.3 orders them.

use std::sync::Arc;

use crate::alert::{Alert, AlertStage};
use crate::engine::{Engine, Match};
use crate::event::{Event, EventTime};
use crate::lang::Program;
use crate::sequencer::{Late, Sequencer};

pub struct Pipeline {
    sequencer: Sequencer,
    engine: Engine,
    stage: AlertStage,
    /// Scratch buffer for one step's matches.
    matches: Vec<Match>,
    late: u64,
}

impl Pipeline {
    pub fn new(program: &Program, max_delay_ms: i64) -> Self {
        let engine = Engine::new(program);
        let stage = AlertStage::new(engine.rules());
        Pipeline {
            sequencer: Sequencer::new(max_delay_ms),
            engine,
            stage,
            matches: Vec::new(),
            late: 0,
        }
    }

    /// Swaps in new rules, keeping the state of unchanged ones.
    pub fn reload(&mut self, program: &Program) {
        let kept = self.engine.reload(program);
        self.stage.reload(self.engine.rules(), &kept);
    }

    /// The whole evaluation state, for a checkpoint.
    pub fn snapshot(&self) -> PipelineSnapshot {
        PipelineSnapshot {
            sequencer: self.sequencer.snapshot(),
            engine: self.engine.snapshot(),
            stage: self.stage.snapshot(),
            late: self.late,
        }
    }

    /// Restores a checkpoint: unchanged rules get their state back, changed
    /// rules start empty. Returns the names of the restored rules.
    pub fn restore(&mut self, snap: &PipelineSnapshot) -> Vec<String> {
        self.sequencer.restore(&snap.sequencer);
        let restored = self.engine.restore(&snap.engine);
        self.stage.restore(&snap.stage, &restored);
        self.late = snap.late;
        restored
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn stage(&self) -> &AlertStage {
        &self.stage
    }

    pub fn watermark(&self) -> EventTime {
        self.sequencer.watermark()
    }

    pub fn late(&self) -> u64 {
        self.late
    }

    /// Offers one decoded event; alerts it makes due are appended to `out`.
    pub fn push(&mut self, ev: Event, out: &mut Vec<Alert>) -> Result<(), Late> {
        match self.sequencer.offer(Arc::new(ev)) {
            Ok(()) => {
                self.drain(out);
                Ok(())
            }
            Err(l) => {
                self.late += 1;
                Err(l)
            }
        }
    }

    /// Moves the watermark forward (idle advance) and processes what is due.
    pub fn advance(&mut self, w: EventTime, out: &mut Vec<Alert>) {
        self.sequencer.advance(w);
        self.drain(out);
    }

    /// End of input: the watermark goes to +infinity (2.5).
    pub fn finish(&mut self, out: &mut Vec<Alert>) {
        self.advance(EventTime::MAX, out);
    }

    /// Releases events and fires timers below the watermark, one step at a
    /// time: timers at `T` after events at `T`, before events after `T`.
    fn drain(&mut self, out: &mut Vec<Alert>) {
        let w = self.sequencer.watermark();
        loop {
            let ev_t = self.sequencer.next_ready();
            let timer_t = self.engine.next_timer().filter(|&t| t < w);
            match (ev_t, timer_t) {
                (Some(e), Some(t)) if t < e => self.engine.fire_timers(t, &mut self.matches),
                (Some(_), _) => {
                    if let Some(ev) = self.sequencer.pop_ready() {
                        self.engine.on_event(&ev, &mut self.matches);
                    }
                }
                (None, Some(t)) => self.engine.fire_timers(t, &mut self.matches),
                (None, None) => break,
            }
            for m in self.matches.drain(..) {
                if let Some(a) = self.stage.process(m) {
                    out.push(a);
                }
            }
        }
    }
}

/// Everything [`Pipeline::snapshot`] captures.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PipelineSnapshot {
    pub sequencer: crate::sequencer::SequencerSnapshot,
    pub engine: crate::engine::snapshot::EngineSnapshot,
    pub stage: crate::alert::StageSnapshot,
    pub late: u64,
}
