//! The synchronous core shared by `run`, `replay` and `test`: events in,
//! alerts out. Sequencer → engine → alert stage, interleaving released
//! events and timers exactly as rule-language.md 2.3 orders them.

use std::sync::Arc;

use crate::alert::{Alert, AlertStage, StageStats};
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

/// An event released by the sequencer, with what a source thread
/// prepared for it.
type Released = (Arc<Event>, Option<Prepared>);

/// Where an alert was produced in the order of steps (rule-language.md
/// 2.3): a released event (its place in the release) or a timer instant,
/// which comes after the events at that instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Step {
    time: EventTime,
    timer: bool,
    ordinal: usize,
}

/// An alert with the step and rule that produced it: parts' alerts are
/// merged on `(step, rule)`.
struct Tagged {
    step: Step,
    rule: usize,
    alert: Alert,
}

/// How many events ahead a part asks for an event's data (tape, text and
/// prepared decisions) to be cached: they were written by a source thread
/// up to `max_delay` of events earlier, and are mostly out of cache by now
/// (replay of 1 M dense events with `--max-delay 2s`: 2.82 → 2.51 s).
const PREFETCH_AHEAD: usize = 4;

/// Below this many released events, parts run one after another on the
/// calling thread: waking a helper costs more than the work.
const PARALLEL_MIN: usize = 32;

/// The rules' evaluation for one share of the rules: an engine owning
/// them, their alert stage, and scratch buffers.
struct Part {
    engine: Engine,
    stage: AlertStage,
    matches: Vec<Match>,
    tagged: Vec<Tagged>,
}

impl Part {
    fn new(engine: Engine) -> Part {
        let stage = AlertStage::new(engine.rules());
        Part {
            engine,
            stage,
            matches: Vec::new(),
            tagged: Vec::new(),
        }
    }

    /// Evaluates released events (in event order) and the timers due
    /// before the watermark `w`, interleaved as 2.3 says: timers at `T`
    /// after the events at `T`, before the events after `T`. Every event
    /// in `chunk` is before `w`.
    fn run(&mut self, chunk: &[Released], w: EventTime, emit: &mut impl FnMut(Step, usize, Alert)) {
        for (ordinal, (ev, prep)) in chunk.iter().enumerate() {
            if let Some((next, prep)) = chunk.get(ordinal + PREFETCH_AHEAD) {
                next.fields.prefetch();
                if let Some(p) = prep {
                    p.prefetch();
                }
            }
            self.timers_before(ev.time, emit);
            self.engine.on_event(ev, prep.as_ref(), &mut self.matches);
            let step = Step {
                time: ev.time,
                timer: false,
                ordinal,
            };
            self.alerts(step, emit);
        }
        self.timers_before(w, emit);
    }

    fn timers_before(&mut self, before: EventTime, emit: &mut impl FnMut(Step, usize, Alert)) {
        while let Some(t) = self.engine.next_timer().filter(|&t| t < before) {
            self.engine.fire_timers(t, &mut self.matches);
            let step = Step {
                time: t,
                timer: true,
                ordinal: 0,
            };
            self.alerts(step, emit);
        }
    }

    fn alerts(&mut self, step: Step, emit: &mut impl FnMut(Step, usize, Alert)) {
        for m in self.matches.drain(..) {
            let rule = m.rule;
            if let Some(a) = self.stage.process(m) {
                emit(step, rule, a);
            }
        }
    }

    /// [`Part::run`] keeping the alerts, tagged, for [`merge`].
    fn run_tagged(&mut self, chunk: &[Released], w: EventTime) {
        let mut tagged = std::mem::take(&mut self.tagged);
        self.run(chunk, w, &mut |step, rule, alert| {
            tagged.push(Tagged { step, rule, alert })
        });
        self.tagged = tagged;
    }
}

/// Puts the parts' alerts (each part's in step order) in the order one
/// engine running every rule gives: by step, then rule; a rule belongs to
/// one part, which keeps its alerts in order.
fn merge(parts: &mut [Part], out: &mut impl AlertSink) {
    let mut lists: Vec<std::iter::Peekable<std::vec::Drain<'_, Tagged>>> = parts
        .iter_mut()
        .map(|p| p.tagged.drain(..).peekable())
        .collect();
    loop {
        let next = lists
            .iter_mut()
            .enumerate()
            .filter_map(|(i, l)| l.peek().map(|t| ((t.step, t.rule), i)))
            .min();
        let Some((_, i)) = next else { break };
        if let Some(t) = lists[i].next() {
            out.emit(t.alert);
        }
    }
}

/// Threads running parts 1.. of a pipeline while the calling thread runs
/// part 0. A part travels to its thread with the work and comes back
/// with its alerts, so between steps the pipeline owns every part.
struct Helpers {
    jobs: Vec<std::sync::mpsc::SyncSender<Job>>,
    done: std::sync::mpsc::Receiver<(usize, Part)>,
}

struct Job {
    index: usize,
    part: Part,
    chunk: Arc<Vec<Released>>,
    w: EventTime,
}

impl Helpers {
    fn spawn(n: usize) -> std::io::Result<Helpers> {
        let (done_tx, done) = std::sync::mpsc::channel();
        let mut jobs = Vec::with_capacity(n);
        for i in 0..n {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(1);
            let done_tx = done_tx.clone();
            std::thread::Builder::new()
                .name(format!("tocsin-engine-{}", i + 1))
                // The same stack as the engine thread: expressions and
                // templates recurse over deep values.
                .stack_size(64 << 20)
                .spawn(move || {
                    for mut job in rx {
                        job.part.run_tagged(&job.chunk, job.w);
                        // The chunk goes back to the pipeline unshared.
                        drop(job.chunk);
                        if done_tx.send((job.index, job.part)).is_err() {
                            break;
                        }
                    }
                })?;
            jobs.push(tx);
        }
        Ok(Helpers { jobs, done })
    }
}

pub struct Pipeline {
    sequencer: Sequencer,
    /// The rules' evaluation: one part, or the rules shared out among
    /// several that run side by side ([`Pipeline::with_parts`]).
    parts: Vec<Part>,
    /// The part owning each rule.
    owner: Vec<usize>,
    helpers: Option<Helpers>,
    /// Fewest released events worth handing to the helpers.
    parallel_min: usize,
    /// Events released by the sequencer, waiting for the parts.
    chunk: Arc<Vec<Released>>,
    late: u64,
    /// Released events, kept to be freed elsewhere ([`Pipeline::defer_frees`]).
    released: Option<Vec<Arc<Event>>>,
    /// The rule files of the running program ([`Program::texts`]).
    texts: Arc<[(String, String)]>,
}

/// Shares rules out among `n` parts: each rule, in rule order, goes to
/// the part with the least weight so far (a stateful rule weighs more
/// than a filter). `fixed[i]`: a part rule `i` must stay in (it holds the
/// rule's state).
fn assign(
    rules: &[Arc<crate::lang::program::Rule>],
    n: usize,
    fixed: &[Option<usize>],
) -> Vec<usize> {
    let weight = |r: &crate::lang::program::Rule| match r.kind {
        crate::lang::program::RuleKind::Filter(_) => 1,
        _ => 3,
    };
    let mut load = vec![0u32; n];
    let mut owner = vec![0; rules.len()];
    for (i, r) in rules.iter().enumerate() {
        if let Some(p) = fixed.get(i).copied().flatten() {
            owner[i] = p;
            load[p] += weight(r);
        }
    }
    for (i, r) in rules.iter().enumerate() {
        if fixed.get(i).copied().flatten().is_none() {
            let p = (0..n).min_by_key(|&p| (load[p], p)).unwrap_or(0);
            owner[i] = p;
            load[p] += weight(r);
        }
    }
    owner
}

fn masks(owner: &[usize], n: usize) -> Vec<Vec<bool>> {
    (0..n)
        .map(|p| owner.iter().map(|&o| o == p).collect())
        .collect()
}

impl Pipeline {
    pub fn new(program: &Program, max_delay_ms: i64) -> Self {
        Pipeline::with_parts(program, max_delay_ms, 1, false)
    }

    /// A pipeline whose rules are shared out among `parts` engines. With
    /// `threads`, parts 1.. run on threads of their own beside the calling
    /// thread; without, one after another. Either way the alerts and their
    /// order are exactly those of one engine running every rule: the parts'
    /// alerts are merged by step, then rule (2.3). If the threads cannot
    /// be started, the parts run on the calling thread.
    pub fn with_parts(program: &Program, max_delay_ms: i64, parts: usize, threads: bool) -> Self {
        let n = parts.clamp(1, program.rules.len().max(1));
        let prep = Arc::new(crate::engine::Preparer::new(program));
        let owner = assign(&program.rules, n, &[]);
        let parts = masks(&owner, n)
            .into_iter()
            .map(|m| Part::new(Engine::part(prep.clone(), m)))
            .collect();
        let helpers = (threads && n > 1)
            .then(|| Helpers::spawn(n - 1))
            .and_then(|h| {
                h.map_err(|e| tracing::warn!(error = %e, "Cannot start engine threads; evaluating on one"))
                    .ok()
            });
        Pipeline {
            sequencer: Sequencer::new(max_delay_ms),
            parts,
            owner,
            helpers,
            parallel_min: PARALLEL_MIN,
            chunk: Arc::new(Vec::new()),
            late: 0,
            released: None,
            texts: program.texts.clone(),
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

    /// Swaps in new rules, keeping the state of unchanged ones (each stays
    /// in the part that holds it; new rules go where the load is least).
    pub fn reload(&mut self, program: &Program) {
        let n = self.parts.len();
        let prep = Arc::new(crate::engine::Preparer::new(program));
        let fixed: Vec<Option<usize>> = crate::engine::kept_rules(self.rules(), &program.rules)
            .into_iter()
            .map(|old| old.map(|o| self.owner[o]))
            .collect();
        let owner = assign(&program.rules, n, &fixed);
        for (part, mask) in self.parts.iter_mut().zip(masks(&owner, n)) {
            let kept = part.engine.reload_part(prep.clone(), mask);
            part.stage.reload(part.engine.rules(), &kept);
        }
        self.owner = owner;
        self.texts = program.texts.clone();
    }

    /// The rule files of the running rules, as loaded (for checkpoints and
    /// the write-ahead log).
    pub fn texts(&self) -> &Arc<[(String, String)]> {
        &self.texts
    }

    /// The whole evaluation state, for a checkpoint: each rule's state
    /// from the part owning it, keys in order.
    pub fn snapshot(&self) -> PipelineSnapshot {
        let mut s = self.snapshot_unsorted();
        s.engine.sort_keys();
        s
    }

    /// [`Pipeline::snapshot`] with each rule's keys in no order: the
    /// daemon sorts them on its checkpoint thread
    /// ([`crate::engine::snapshot::EngineSnapshot::sort_keys`]).
    pub fn snapshot_unsorted(&self) -> PipelineSnapshot {
        let mut engines: Vec<Vec<Option<_>>> = self
            .parts
            .iter()
            .map(|p| p.engine.snapshot().rules.into_iter().map(Some).collect())
            .collect();
        let rules = self
            .owner
            .iter()
            .enumerate()
            .filter_map(|(i, &p)| engines[p][i].take())
            .collect();
        let mut stage = self.parts[0].stage.snapshot();
        for p in &self.parts[1..] {
            stage.throttles.extend(p.stage.snapshot().throttles);
        }
        let counts = self.stage_stats();
        for (i, (_, _, alerts, throttled)) in stage.alerts.iter_mut().enumerate() {
            *alerts = counts.alerts[i];
            *throttled = counts.throttled[i];
        }
        stage
            .throttles
            .sort_by(|a, b| (&a.rule, &a.key).cmp(&(&b.rule, &b.key)));
        PipelineSnapshot {
            sequencer: self.sequencer.snapshot(),
            engine: crate::engine::snapshot::EngineSnapshot { rules },
            stage,
            late: self.late,
        }
    }

    /// Restores a checkpoint: unchanged rules get their state back (in
    /// the part owning them), changed rules start empty. Returns the names
    /// of the restored rules, in rule order.
    pub fn restore(&mut self, snap: &PipelineSnapshot) -> Vec<String> {
        self.sequencer.restore(&snap.sequencer);
        let mut restored = Vec::new();
        for p in &mut self.parts {
            let mine = p.engine.restore(&snap.engine);
            p.stage.restore(&snap.stage, &mine);
            restored.extend(mine);
        }
        self.late = snap.late;
        let rules = self.rules();
        restored.sort_by_key(|name| rules.iter().position(|r| &r.name == name));
        restored
    }

    /// The running rules, in rule order.
    pub fn rules(&self) -> &[Arc<crate::lang::program::Rule>] {
        self.parts[0].engine.rules()
    }

    /// The stateless part of the running rules, for source threads
    /// ([`Pipeline::push_prepared`]).
    pub fn preparer(&self) -> Arc<crate::engine::Preparer> {
        self.parts[0].engine.preparer()
    }

    /// Per rule: matches and events without their key.
    pub fn rule_stats(&self) -> Vec<crate::engine::RuleStats> {
        self.owner
            .iter()
            .enumerate()
            .map(|(i, &p)| self.parts[p].engine.stats()[i].clone())
            .collect()
    }

    /// Per rule: live keys.
    pub fn key_counts(&self) -> Vec<usize> {
        let counts: Vec<Vec<usize>> = self.parts.iter().map(|p| p.engine.key_counts()).collect();
        self.owner
            .iter()
            .enumerate()
            .map(|(i, &p)| counts[p][i])
            .collect()
    }

    /// Timers pending, all rules.
    pub fn pending_timers(&self) -> usize {
        self.parts.iter().map(|p| p.engine.pending_timers()).sum()
    }

    /// The alert stage's counters, all parts.
    pub fn stage_stats(&self) -> StageStats {
        let mut s = self.parts[0].stage.stats().clone();
        for p in &self.parts[1..] {
            let o = p.stage.stats();
            for (a, b) in s.alerts.iter_mut().zip(&o.alerts) {
                a[0] += b[0];
                a[1] += b[1];
            }
            for (a, b) in s.throttled.iter_mut().zip(&o.throttled) {
                *a += b;
            }
            s.template_errors += o.template_errors;
        }
        s
    }

    /// Hands released events to the helper threads from `n` events on
    /// (default 32; tests use 0 to run every step on the helpers).
    pub fn parallel_from(&mut self, n: usize) {
        self.parallel_min = n;
    }

    /// How many parts the rules are shared out among.
    pub fn parts(&self) -> usize {
        self.parts.len()
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
        self.offer(ev, prep)?;
        self.drain(out);
        Ok(())
    }

    /// Accepts an event (or refuses it as late) without evaluating what it
    /// makes due: [`Pipeline::drain`] does, for all events offered so far.
    /// Offering a batch and draining once gives the alerts, in the order,
    /// that pushing each event does: an event accepted after others were
    /// released is after all of them in event order.
    pub fn offer(&mut self, ev: Event, prep: Option<Prepared>) -> Result<(), Late> {
        match self.sequencer.offer(Arc::new(ev), prep) {
            Ok(()) => Ok(()),
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
    pub fn drain(&mut self, out: &mut impl AlertSink) {
        let w = self.sequencer.watermark();
        let mut chunk = std::mem::take(&mut self.chunk);
        {
            // Invariant: between drains the pipeline holds the only handle
            // (helpers drop theirs before handing their part back).
            let events = Arc::get_mut(&mut chunk).expect("the released chunk is not shared");
            while let Some(r) = self.sequencer.pop_ready() {
                events.push(r);
            }
        }
        match (&self.helpers, self.parts.len()) {
            (_, 1) => self.parts[0].run(&chunk, w, &mut |_, _, a| out.emit(a)),
            (Some(h), _) if chunk.len() >= self.parallel_min => {
                let away: Vec<Part> = self.parts.drain(1..).collect();
                let n = away.len();
                for (i, part) in away.into_iter().enumerate() {
                    let job = Job {
                        index: i,
                        part,
                        chunk: chunk.clone(),
                        w,
                    };
                    h.jobs[i].send(job).expect("engine thread stopped");
                }
                self.parts[0].run_tagged(&chunk, w);
                let mut back: Vec<Option<Part>> = (0..n).map(|_| None).collect();
                for _ in 0..n {
                    let (i, part) = h.done.recv().expect("engine thread stopped");
                    back[i] = Some(part);
                }
                self.parts
                    .extend(back.into_iter().map(|p| p.expect("every part came back")));
                merge(&mut self.parts, out);
            }
            _ => {
                for p in &mut self.parts {
                    p.run_tagged(&chunk, w);
                }
                merge(&mut self.parts, out);
            }
        }
        let events = Arc::get_mut(&mut chunk).expect("the released chunk is not shared");
        match &mut self.released {
            Some(r) => r.extend(events.drain(..).map(|(ev, _)| ev)),
            None => events.clear(),
        }
        self.chunk = chunk;
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
    use crate::decode::test_event;
    use crate::lang::{Options, load_texts};

    /// With deferred frees, every released event is handed over once, in
    /// release order; without, none is kept.
    #[test]
    fn deferred_frees_hand_over_each_released_event() {
        let rules = "rule f { from hb where n > 5 }";
        let loaded = load_texts(vec![("r.rules".into(), rules.into())], &Options::default());
        let ev = |t: i64| test_event(&format!(r#"{{"type":"hb","ts":{t},"n":1}}"#));
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
        let events: Vec<Event> = (0..200)
            .map(|i| {
                test_event(&format!(
                    r#"{{"type":"hb","ts":{},"h":"h{}","n":{}}}"#,
                    i * 1000,
                    i % 50,
                    i % 9
                ))
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
