//! The synchronous core shared by `run`, `replay` and `test`: events in,
//! alerts out. Sequencer → engine → alert stage, interleaving released
//! events and timers exactly as rule-language.md 2.3 orders them.

use std::sync::Arc;

use crate::alert::{Alert, AlertStage};
use crate::engine::{Engine, Match, Prepared};
use crate::event::{Event, EventTime};
use crate::lang::Program;
use crate::sequencer::{Late, Sequencer};

/// Where a pipeline puts the alerts it produces: a `Vec` (collected, the
/// caller drains it), or a closure wrapped in [`Sink`] that takes each alert
/// as it comes, so that a step firing many timers (the end of input, an
/// idle advance over a million absence keys) holds none of them.
pub trait AlertSink {
    fn emit(&mut self, alert: Alert);
}

impl AlertSink for Vec<Alert> {
    fn emit(&mut self, alert: Alert) {
        self.push(alert);
    }
}

/// A closure as an [`AlertSink`].
pub struct Sink<F: FnMut(Alert)>(pub F);

impl<F: FnMut(Alert)> AlertSink for Sink<F> {
    fn emit(&mut self, alert: Alert) {
        (self.0)(alert)
    }
}

pub struct Pipeline {
    sequencer: Sequencer,
    engine: Engine,
    stage: AlertStage,
    /// Scratch buffer for one step's matches.
    matches: Vec<Match>,
    late: u64,
    /// Released events, kept to be freed elsewhere ([`Pipeline::defer_frees`]).
    released: Option<Vec<Arc<Event>>>,
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
            released: None,
        }
    }

    /// Keeps evaluated events instead of freeing them, for the caller to
    /// take ([`Pipeline::take_released`]) and free on another thread: the
    /// daemon's events are built on the source threads, and freeing their
    /// trees was a fifth of the engine thread's time.
    pub fn defer_frees(&mut self) {
        self.released = Some(Vec::new());
    }

    /// The events evaluated since the last call (empty unless
    /// [`Pipeline::defer_frees`] was called).
    pub fn take_released(&mut self) -> Vec<Arc<Event>> {
        self.released
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
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
    pub fn push(&mut self, ev: Event, out: &mut impl AlertSink) -> Result<(), Late> {
        self.push_prepared(ev, None, out)
    }

    /// [`Pipeline::push`] with what a source thread prepared for the event
    /// ([`crate::engine::Preparer`]); the engine uses it if it was prepared
    /// for the rules it runs.
    pub fn push_prepared(
        &mut self,
        ev: Event,
        prep: Option<Prepared>,
        out: &mut impl AlertSink,
    ) -> Result<(), Late> {
        match self.sequencer.offer(Arc::new(ev), prep) {
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
    pub fn advance(&mut self, w: EventTime, out: &mut impl AlertSink) {
        self.sequencer.advance(w);
        self.drain(out);
    }

    /// End of input: the watermark goes to +infinity (2.5).
    pub fn finish(&mut self, out: &mut impl AlertSink) {
        self.advance(EventTime::MAX, out);
    }

    /// Releases events and fires timers below the watermark, one step at a
    /// time: timers at `T` after events at `T`, before events after `T`.
    fn drain(&mut self, out: &mut impl AlertSink) {
        let w = self.sequencer.watermark();
        loop {
            let ev_t = self.sequencer.next_ready();
            let timer_t = self.engine.next_timer().filter(|&t| t < w);
            match (ev_t, timer_t) {
                (Some(e), Some(t)) if t < e => self.engine.fire_timers(t, &mut self.matches),
                (Some(_), _) => {
                    if let Some((ev, prep)) = self.sequencer.pop_ready() {
                        self.engine.on_event(&ev, prep.as_ref(), &mut self.matches);
                        if let Some(r) = &mut self.released {
                            r.push(ev);
                        }
                    }
                }
                (None, Some(t)) => self.engine.fire_timers(t, &mut self.matches),
                (None, None) => break,
            }
            for m in self.matches.drain(..) {
                if let Some(a) = self.stage.process(m) {
                    out.emit(a);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{Decoded, Decoder};
    use crate::lang::{Options, load_texts};

    /// With deferred frees, every released event is handed over once, in
    /// release order; without, none is kept.
    #[test]
    fn deferred_frees_hand_over_each_released_event() {
        let rules = "rule f { from hb where n > 5 }";
        let loaded = load_texts(vec![("r.rules".into(), rules.into())], &Options::default());
        let dec = Decoder::default();
        let ev = |t: i64| match dec.decode(
            format!(r#"{{"type":"hb","ts":{t},"n":1}}"#).as_bytes(),
            None,
        ) {
            Decoded::Event(e) => e,
            _ => panic!("decodes"),
        };
        let mut p = Pipeline::new(&loaded.program, 0);
        let mut out = Vec::new();
        p.push(ev(1), &mut out).unwrap();
        p.push(ev(2), &mut out).unwrap();
        assert!(p.take_released().is_empty());
        p.defer_frees();
        p.push(ev(3), &mut out).unwrap();
        p.push(ev(4), &mut out).unwrap();
        let times: Vec<i64> = p.take_released().iter().map(|e| e.time.0).collect();
        assert_eq!(times, vec![2, 3]); // 4 is still held (max_delay 0: released by a later event)
        assert!(p.take_released().is_empty());
        p.finish(&mut out);
        assert_eq!(p.take_released().len(), 1);
    }

    /// A closure sink sees exactly the alerts, in the order, a `Vec` gets.
    #[test]
    fn a_closure_sink_gets_what_a_vec_gets() {
        let rules = "rule gone { key h from hb absent 1m }\nrule f { from hb where n > 5 }";
        let loaded = load_texts(vec![("r.rules".into(), rules.into())], &Options::default());
        assert!(!loaded.has_errors(), "{}", loaded.render());
        let dec = Decoder::default();
        let events: Vec<Event> = (0..200)
            .map(|i| {
                let line = format!(
                    r#"{{"type":"hb","ts":{},"h":"h{}","n":{}}}"#,
                    i * 1000,
                    i % 50,
                    i % 9
                );
                match dec.decode(line.as_bytes(), None) {
                    Decoded::Event(e) => e,
                    _ => panic!("decodes"),
                }
            })
            .collect();
        let mut a = Pipeline::new(&loaded.program, 0);
        let mut collected = Vec::new();
        for e in events.clone() {
            a.push(e, &mut collected).unwrap();
        }
        a.finish(&mut collected);
        let mut b = Pipeline::new(&loaded.program, 0);
        let mut seen = Vec::new();
        let mut sink = Sink(|x: Alert| seen.push(x.to_json()));
        for e in events {
            b.push(e, &mut sink).unwrap();
        }
        b.finish(&mut sink);
        let collected: Vec<String> = collected.iter().map(Alert::to_json).collect();
        assert!(collected.len() > 50);
        assert_eq!(seen, collected);
    }
}
