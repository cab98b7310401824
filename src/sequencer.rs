//! Event order and lateness (rule-language.md 2.1, 2.2): the watermark
//! `W = M - max_delay`, late events set aside, on-time events held until
//! `W > ts` and released in event order (time, then input text bytewise).
//!
//! No clock here: idle advance and end of input call [`Sequencer::advance`]
//! with the instant to move to.

use std::cmp::Ordering;
use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

use crate::engine::Prepared;
use crate::event::{Event, EventTime};

/// An event waiting for the watermark, held in the order of time and
/// arrival: integers only, so an insertion reads no event text. The events
/// of one instant are put in text order when they are released, all of
/// them at once ([`Sequencer::pop_ready`]).
#[derive(Debug)]
struct Held {
    time: EventTime,
    ev: Arc<Event>,
    arrival: u64,
    /// What a source thread prepared for the engine, if it did.
    prep: Option<Prepared>,
}

impl PartialEq for Held {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Held {
    fn cmp(&self, other: &Self) -> Ordering {
        self.time
            .cmp(&other.time)
            .then(self.arrival.cmp(&other.arrival))
    }
}

/// Why an event was not accepted for evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Late {
    pub watermark: EventTime,
}

#[derive(Debug)]
pub struct Sequencer {
    max_delay: i64,
    /// The largest accepted timestamp (`M`).
    max_seen: Option<EventTime>,
    /// `W`; `EventTime::MIN` before any event.
    watermark: EventTime,
    held: BTreeSet<Held>,
    /// The events of the instant being released, in event order: taken
    /// from `held` together once their time is below the watermark (no
    /// event of that time can be accepted any more).
    ready: VecDeque<Held>,
    arrivals: u64,
}

impl Sequencer {
    pub fn new(max_delay_ms: i64) -> Self {
        Sequencer {
            max_delay: max_delay_ms.max(0),
            max_seen: None,
            watermark: EventTime::MIN,
            held: BTreeSet::new(),
            ready: VecDeque::new(),
            arrivals: 0,
        }
    }

    pub fn watermark(&self) -> EventTime {
        self.watermark
    }

    pub fn max_seen(&self) -> Option<EventTime> {
        self.max_seen
    }

    /// Events accepted but not yet released.
    pub fn held(&self) -> usize {
        self.held.len() + self.ready.len()
    }

    /// Accepts an event, or refuses it as late (`ts < W`). `prep`: what was
    /// prepared for the engine, handed back with the event by
    /// [`Sequencer::pop_ready`].
    pub fn offer(&mut self, ev: Arc<Event>, prep: Option<Prepared>) -> Result<(), Late> {
        if ev.time < self.watermark {
            return Err(Late {
                watermark: self.watermark,
            });
        }
        if self.max_seen.is_none_or(|m| ev.time > m) {
            self.max_seen = Some(ev.time);
            self.advance(ev.time.saturating_sub(self.max_delay));
        }
        self.arrivals += 1;
        self.held.insert(Held {
            time: ev.time,
            ev,
            arrival: self.arrivals,
            prep,
        });
        Ok(())
    }

    /// Moves the watermark forward to `w` (never backwards).
    pub fn advance(&mut self, w: EventTime) {
        if w > self.watermark {
            self.watermark = w;
        }
    }

    /// The time of the next event ready for release (`ts < W`).
    pub fn next_ready(&self) -> Option<EventTime> {
        if let Some(h) = self.ready.front() {
            return Some(h.time);
        }
        self.held
            .first()
            .map(|h| h.time)
            .filter(|&t| t < self.watermark)
    }

    /// Releases the next ready event, in event order, with what was
    /// prepared for it.
    pub fn pop_ready(&mut self) -> Option<(Arc<Event>, Option<Prepared>)> {
        if self.ready.is_empty() {
            let t = self.next_ready()?;
            while self.held.first().is_some_and(|h| h.time == t) {
                if let Some(h) = self.held.pop_first() {
                    self.ready.push_back(h);
                }
            }
            // Stable: events of equal text keep their arrival order.
            self.ready
                .make_contiguous()
                .sort_by(|a, b| a.ev.order_cmp(&b.ev));
        }
        self.ready.pop_front().map(|h| (h.ev, h.prep))
    }
}

/// The sequencer's state in a checkpoint.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SequencerSnapshot {
    pub max_seen: Option<i64>,
    pub watermark: i64,
    pub held: Vec<crate::engine::snapshot::EventSnap>,
}

impl Sequencer {
    pub fn snapshot(&self) -> SequencerSnapshot {
        SequencerSnapshot {
            max_seen: self.max_seen.map(|t| t.0),
            watermark: self.watermark.0,
            held: self
                .ready
                .iter()
                .chain(&self.held)
                .map(|h| crate::engine::snapshot::EventSnap::of(&h.ev))
                .collect(),
        }
    }

    /// Restores the state (keeping this sequencer's `max_delay`).
    pub fn restore(&mut self, s: &SequencerSnapshot) {
        self.max_seen = s.max_seen.map(EventTime);
        self.watermark = EventTime(s.watermark);
        self.held.clear();
        self.ready.clear();
        for e in &s.held {
            if let Some(ev) = e.restore() {
                self.arrivals += 1;
                self.held.insert(Held {
                    time: ev.time,
                    ev,
                    arrival: self.arrivals,
                    prep: None,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(t: i64, raw: &str) -> Arc<Event> {
        Arc::new(Event {
            stream: "s".into(),
            time: EventTime(t),
            // The text is a JSON string: only its order matters here.
            fields: crate::event::Doc::parse(&serde_json::Value::from(raw).to_string())
                .expect("a JSON string"),
        })
    }

    #[test]
    fn holds_until_watermark_passes_and_orders_ties_by_text() {
        let mut s = Sequencer::new(0);
        s.offer(ev(1000, "b"), None).unwrap();
        s.offer(ev(1000, "a"), None).unwrap();
        assert_eq!(s.pop_ready(), None, "W = 1000 is not > 1000");
        s.offer(ev(2000, "c"), None).unwrap();
        assert_eq!(s.pop_ready().unwrap().0.raw(), r#""a""#);
        assert_eq!(s.pop_ready().unwrap().0.raw(), r#""b""#);
        assert_eq!(s.pop_ready(), None);
        assert_eq!(
            s.offer(ev(1999, "late"), None),
            Err(Late {
                watermark: EventTime(2000)
            })
        );
        assert!(s.offer(ev(2000, "on time"), None).is_ok());
    }

    #[test]
    fn max_delay_lowers_the_watermark() {
        let mut s = Sequencer::new(2000);
        s.offer(ev(2500, "x"), None).unwrap();
        assert_eq!(s.watermark(), EventTime(500));
        assert!(s.offer(ev(500, "y"), None).is_ok());
        assert!(s.offer(ev(499, "z"), None).is_err());
        s.advance(EventTime::MAX);
        assert_eq!(s.pop_ready().unwrap().0.raw(), r#""y""#);
    }
}
