//! The engine thread: the only owner of the [`Pipeline`]. It takes what the
//! log writer has logged ([`Logged`]: batches and idle advances with their
//! LSNs, ticks, reloads, checkpoint markers) from one bounded queue, in log
//! order, feeds the pipeline, hands alerts to the outbox and publishes
//! counters. Synchronous by design.
//!
//! Invariant: a checkpoint written for a marker at LSN `L` covers exactly the
//! records before `L`: the queue keeps log order, so every one of them has
//! been evaluated and none after it.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::sync::mpsc as sync_mpsc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::Shared;
use crate::alert::Alert;
use crate::checkpoint::{self, Checkpoint};
use crate::event::{Event, EventTime};
use crate::metrics::{AlertLabels, ChannelLabel, RuleLabel};
use crate::outbox::Outbox;
use crate::pipeline::Pipeline;
use crate::source::FileOffset;
use crate::source::{Backlog, EngineMsg, now};

/// Settings of the engine thread.
pub struct EngineSettings {
    pub max_delay_ms: i64,
    pub idle_timeout_ms: Option<i64>,
    pub late_log: Option<std::path::PathBuf>,
    pub state_dir: std::path::PathBuf,
}

/// What the log writer passes on to the engine thread, in log order.
#[derive(Debug)]
pub enum Logged {
    /// A batch, in the log (and synced as the policy says) at `lsn`.
    Batch {
        lsn: u64,
        source: Arc<str>,
        events: Vec<Event>,
        /// What the source prepared for each event (empty: nothing).
        prepared: Vec<crate::engine::Prepared>,
        offset: Option<FileOffset>,
    },
    /// An idle advance of the watermark, in the log at `lsn`.
    Watermark {
        lsn: u64,
        to: EventTime,
    },
    Tick(EventTime),
    Reload {
        program: crate::lang::Program,
        done: oneshot::Sender<()>,
    },
    /// Write a checkpoint covering every record before `lsn` (the log is
    /// synced up to there); answer with `lsn` once it is written.
    Checkpoint {
        lsn: u64,
    },
}

/// How long an idle advance may take to come back from the log before it
/// is asked for again (its logging failed, or the queue dropped it).
const ADVANCE_RETRY_MS: i64 = 5_000;

/// What [`publish`] last copied into the metrics: per rule name, and the
/// template errors of all rules.
#[derive(Default)]
struct PublishedAll {
    rules: HashMap<String, Published>,
    template_errors: u64,
}

/// Counters already published to Prometheus, per rule name.
#[derive(Default, Clone, Copy)]
struct Published {
    matches: u64,
    alerts: [u64; 2],
    throttled: u64,
}

impl Published {
    /// The counts of rule `i` now.
    fn of(i: usize, rules: &[crate::engine::RuleStats], stage: &crate::alert::StageStats) -> Self {
        Published {
            matches: rules[i].matches,
            alerts: stage.alerts[i],
            throttled: stage.throttled[i],
        }
    }
}

/// The engine thread's ends of its channels.
pub struct EngineLinks {
    /// From the log writer.
    pub rx: sync_mpsc::Receiver<Logged>,
    /// To the log writer: LSNs of written checkpoints (the log may be cut).
    pub written: sync_mpsc::Sender<u64>,
    /// To the log writer's input queue, for idle advances. Weak, so that the
    /// queue closes at shutdown once the sources are gone.
    pub requests: mpsc::WeakSender<EngineMsg>,
    /// Events handed over and not yet evaluated; taken off here.
    pub backlog: Arc<Backlog>,
}

/// Closes the backlog when the engine thread ends, even by a panic, so the
/// log writer never waits for room that will not come.
struct CloseOnDrop(Arc<Backlog>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

pub fn run(
    mut pipeline: Pipeline,
    links: EngineLinks,
    shared: Arc<Shared>,
    outbox: Arc<Outbox>,
    settings: EngineSettings,
    mut offsets: HashMap<String, FileOffset>,
) {
    let mut alerts: Vec<Alert> = Vec::new();
    let mut last_accept = now();
    let mut published = PublishedAll::default();
    let mut last_view = Instant::now() - Duration::from_secs(10);
    let mut late_log = LateLog::new(settings.late_log.clone());
    // Wall time of an idle advance asked for and not yet back from the log.
    // Only saves asking again every second: a request lost (not logged)
    // is asked again after ADVANCE_RETRY, and a repeated advance is
    // harmless (logged too, replayed in the same order).
    let mut advance_asked: Option<EventTime> = None;
    // LSN of the last evaluated record (checked against checkpoint markers).
    let mut evaluated: u64 = 0;
    let _close = CloseOnDrop(links.backlog.clone());
    // Evaluated events are freed on a thread of their own: they were built
    // on the source threads, and freeing them here (a cross-thread free of
    // every member of every tree) was a fifth of this thread's time. The
    // queue is bounded; when it is full they are freed here.
    pipeline.defer_frees();
    let (free_tx, free_rx) = std::sync::mpsc::sync_channel::<Vec<Arc<crate::event::Event>>>(16);
    let _freer = std::thread::Builder::new()
        .name("tocsin-free".into())
        .spawn(move || free_rx.iter().for_each(drop));
    // Checkpoints are taken here (a consistent snapshot at the marker) and
    // written on a thread of their own: encoding, hashing and syncing a
    // state of a million keys took seconds, during which nothing was
    // evaluated and the sources were answered 503. One at a time, in
    // order; the writer tells the log writer when the log may be cut.
    // Without that thread (it could not start) they are written here.
    let ckpt = CheckpointWriter {
        state_dir: settings.state_dir.clone(),
        shared: shared.clone(),
        written: links.written,
    };
    let (cp_tx, cp_rx) = std::sync::mpsc::sync_channel::<(Checkpoint, Instant)>(1);
    let writer = {
        let ckpt = ckpt.clone();
        std::thread::Builder::new()
            .name("tocsin-ckpt".into())
            .spawn(move || {
                cp_rx
                    .into_iter()
                    .for_each(|(cp, started)| ckpt.write(cp, started))
            })
    };
    let (cp_tx, writer) = match writer {
        Ok(w) => (Some(cp_tx), Some(w)),
        Err(e) => {
            tracing::error!(error = %e, "Cannot start the checkpoint thread; checkpoints are written by the engine thread");
            (None, None)
        }
    };
    let hand_off = |pipeline: &mut Pipeline| {
        let released = pipeline.take_released();
        if !released.is_empty() {
            let _ = free_tx.try_send(released);
        }
    };
    publish(&pipeline, &shared, &mut published);
    while let Ok(msg) = links.rx.recv() {
        match msg {
            Logged::Batch {
                lsn,
                source,
                events,
                prepared,
                offset,
            } => {
                evaluated = lsn;
                if let Some(o) = offset {
                    offsets.insert(o.path.clone(), o);
                }
                let (mut accepted, mut late) = (0, 0);
                let n = events.len();
                let mut prepared = prepared.into_iter();
                for ev in events {
                    let prep = prepared.next();
                    // The text is kept only for an event behind the
                    // watermark (the sequencer's "late"), not copied for all.
                    let late_raw = (late_log.is_on() && ev.time < pipeline.watermark())
                        .then(|| Box::<str>::from(ev.raw()));
                    match pipeline.offer(ev, prep) {
                        Ok(()) => accepted += 1,
                        Err(_) => {
                            late += 1;
                            if let Some(raw) = &late_raw {
                                late_log.write(raw);
                            }
                        }
                    }
                }
                // One evaluation for the whole batch: the same alerts, in
                // the same order, as one per event (Pipeline::offer), and
                // the engine threads wake once.
                pipeline.drain(&mut alerts);
                if accepted > 0 {
                    last_accept = now();
                }
                if late > 0 {
                    shared.metrics.events_late.inc_by(late);
                    shared.count_late(&source, late);
                }
                deliver(&mut alerts, &shared, &outbox);
                hand_off(&mut pipeline);
                links.backlog.take(n);
            }
            Logged::Watermark { lsn, to } => {
                evaluated = lsn;
                advance_asked = None;
                pipeline.advance(to, &mut alerts);
                deliver(&mut alerts, &shared, &outbox);
                hand_off(&mut pipeline);
            }
            Logged::Tick(wall) => {
                if let Some(idle) = settings.idle_timeout_ms {
                    let target = wall.saturating_sub(settings.max_delay_ms);
                    let waiting = advance_asked.is_some_and(|at| {
                        wall.millis().saturating_sub(at.millis()) < ADVANCE_RETRY_MS
                    });
                    if !waiting
                        && wall.millis().saturating_sub(last_accept.millis()) >= idle
                        && target > pipeline.watermark()
                    {
                        // Logged first (by the log writer), so recovery
                        // replays the same advance at the same place.
                        let asked = links
                            .requests
                            .upgrade()
                            .is_some_and(|tx| tx.try_send(EngineMsg::IdleAdvance(target)).is_ok());
                        advance_asked = asked.then_some(wall);
                    }
                }
                let w = pipeline.watermark();
                if w > EventTime::MIN {
                    let lag = (wall.millis().saturating_sub(w.millis())) as f64 / 1000.0;
                    shared.metrics.watermark_lag_seconds.set(lag);
                }
                for (channel, n) in outbox.pending() {
                    shared
                        .metrics
                        .outbox_pending
                        .get_or_create(&ChannelLabel { channel })
                        .set(i64::try_from(n).unwrap_or(i64::MAX));
                }
                late_log.flush();
            }
            Logged::Reload { program, done } => {
                // Counts not yet published would go with a changed rule's
                // state: publish them first, then start the rules' counts
                // from what they are after the swap (zero for a changed or
                // new rule), and drop the key gauge of a removed rule.
                publish(&pipeline, &shared, &mut published);
                pipeline.reload(&program);
                rebase(&pipeline, &shared, &mut published);
                shared.preparer.set(pipeline.preparer());
                tracing::info!(rules = program.rules.len(), "Rules reloaded");
                last_view = Instant::now() - Duration::from_secs(10);
                let _ = done.send(());
            }
            Logged::Checkpoint { lsn } => {
                debug_assert!(evaluated < lsn, "a checkpoint marker out of log order");
                if let Some((cp, started)) =
                    take_checkpoint(&pipeline, &shared, &outbox, lsn, &offsets)
                {
                    // Waits while the previous one is still being written.
                    match &cp_tx {
                        Some(tx) => {
                            if let Err(std::sync::mpsc::SendError((cp, started))) =
                                tx.send((cp, started))
                            {
                                ckpt.write(cp, started);
                            }
                        }
                        None => ckpt.write(cp, started),
                    }
                }
                publish(&pipeline, &shared, &mut published);
                last_view = Instant::now();
            }
        }
        if last_view.elapsed() >= Duration::from_millis(200) {
            publish(&pipeline, &shared, &mut published);
            last_view = Instant::now();
        }
    }
    // The queue closed: the log writer waits for the last checkpoint,
    // which is written before this thread ends.
    drop(cp_tx);
    if let Some(w) = writer
        && w.join().is_err()
    {
        tracing::error!("The checkpoint thread panicked");
    }
    publish(&pipeline, &shared, &mut published);
    late_log.flush();
    tracing::info!("Engine stopped");
}

/// The state for a checkpoint covering the log records before `lsn` (all
/// evaluated, all synced), once the alerts so far are durable in the
/// outbox; `None` if they cannot be made so (no checkpoint then).
fn take_checkpoint(
    pipeline: &Pipeline,
    shared: &Shared,
    outbox: &Outbox,
    lsn: u64,
    offsets: &HashMap<String, FileOffset>,
) -> Option<(Checkpoint, Instant)> {
    let started = Instant::now();
    if let Err(e) = outbox.sync() {
        tracing::error!(error = %e, "Cannot sync the outbox before a checkpoint; skipping it");
        return None;
    }
    let cp = Checkpoint {
        lsn,
        written_at: now().0,
        // Keys are sorted by the checkpoint writer, off this thread.
        pipeline: pipeline.snapshot_unsorted(),
        rules: Some(pipeline.texts().to_vec()),
        file_offsets: offsets.values().map(Into::into).collect(),
        idempotency: shared.idempotency.list().iter().map(Into::into).collect(),
    };
    tracing::debug!(
        lsn,
        seconds = started.elapsed().as_secs_f64(),
        "Checkpoint taken"
    );
    Some((cp, started))
}

/// Writes checkpoints and tells the log writer which ones are written.
#[derive(Clone)]
struct CheckpointWriter {
    state_dir: std::path::PathBuf,
    shared: Arc<Shared>,
    /// To the log writer: the log may be cut behind these LSNs.
    written: sync_mpsc::Sender<u64>,
}

impl CheckpointWriter {
    /// Writes a checkpoint taken at `started` (its keys put in order
    /// first); once it is on disk, the log writer hears of it.
    fn write(&self, mut cp: Checkpoint, started: Instant) {
        cp.pipeline.engine.sort_keys();
        match checkpoint::write(&self.state_dir, &cp) {
            Ok(path) => {
                let secs = started.elapsed().as_secs_f64();
                self.shared.metrics.checkpoint_seconds.set(secs);
                self.shared.set_last_checkpoint(cp.written_at);
                tracing::debug!(path = %path.display(), lsn = cp.lsn, seconds = secs, "Checkpoint written");
                let _ = self.written.send(cp.lsn);
            }
            Err(e) => tracing::error!(error = %e, "Checkpoint failed; the log is kept"),
        }
    }
}

pub(super) fn deliver(alerts: &mut Vec<Alert>, shared: &Shared, outbox: &Outbox) {
    for a in alerts.drain(..) {
        let channels = if a.rule.notify.is_empty() {
            &shared.default_notify
        } else {
            &a.rule.notify
        };
        if let Err(e) = outbox.submit(&a, channels) {
            tracing::error!(error = %e, alert = %a.id, "Cannot record alert in the outbox");
        }
        shared.note_alert(&a.rule.name, a.time);
        shared.remember_alert(a.to_json());
    }
}

/// After a reload: the published counts of each running rule become its
/// current counts (kept for an unchanged rule, zero for a changed one, so
/// that its new counts are published from the first), and the rules that
/// are gone lose their live-key gauge.
fn rebase(pipeline: &Pipeline, shared: &Shared, all: &mut PublishedAll) {
    let rule_stats = pipeline.rule_stats();
    let stage = pipeline.stage_stats();
    let now: HashMap<String, Published> = pipeline
        .rules()
        .iter()
        .enumerate()
        .map(|(i, r)| (r.name.clone(), Published::of(i, &rule_stats, &stage)))
        .collect();
    for gone in all.rules.keys().filter(|n| !now.contains_key(*n)) {
        shared
            .metrics
            .rule_keys
            .remove(&RuleLabel { rule: gone.clone() });
    }
    all.rules = now;
}

/// Copies engine counters into metrics and the `/v1/rules` view.
fn publish(pipeline: &Pipeline, shared: &Shared, all: &mut PublishedAll) {
    let rule_stats = pipeline.rule_stats();
    let stage = pipeline.stage_stats();
    shared
        .metrics
        .template_errors
        .inc_by(stage.template_errors.saturating_sub(all.template_errors));
    all.template_errors = stage.template_errors;
    let published = &mut all.rules;
    let keys = pipeline.key_counts();
    let mut view = Vec::with_capacity(pipeline.rules().len());
    for (i, r) in pipeline.rules().iter().enumerate() {
        let label = RuleLabel {
            rule: r.name.clone(),
        };
        let now_p = Published::of(i, &rule_stats, &stage);
        let before = published.get(&r.name).copied().unwrap_or_default();
        let delta = |a: u64, b: u64| a.saturating_sub(b);
        shared
            .metrics
            .rule_matches
            .get_or_create(&label)
            .inc_by(delta(now_p.matches, before.matches));
        for (s, status) in ["firing", "resolved"].iter().enumerate() {
            shared
                .metrics
                .alerts
                .get_or_create(&AlertLabels {
                    rule: r.name.clone(),
                    status: status.to_string(),
                })
                .inc_by(delta(now_p.alerts[s], before.alerts[s]));
        }
        shared
            .metrics
            .alerts_throttled
            .get_or_create(&label)
            .inc_by(delta(now_p.throttled, before.throttled));
        shared
            .metrics
            .rule_keys
            .get_or_create(&label)
            .set(i64::try_from(keys[i]).unwrap_or(i64::MAX));
        published.insert(r.name.clone(), now_p);
        view.push(super::RuleView {
            name: r.name.clone(),
            kind: r.kind_name(),
            file: r.file.clone(),
            line: r.line,
            keys: keys[i] as u64,
            alerts: now_p.alerts[0] + now_p.alerts[1],
            matches: now_p.matches,
            rule: r.clone(),
        });
    }
    shared.set_rules_view(view);
    shared.set_watermark(pipeline.watermark());
}

/// The optional late-event log: raw lines appended, rotated at a size cap.
struct LateLog {
    path: Option<std::path::PathBuf>,
    file: Option<std::io::BufWriter<std::fs::File>>,
    written: u64,
}

/// Size at which the late-event log is rotated to `<path>.1`.
const LATE_LOG_MAX: u64 = 64 << 20;

impl LateLog {
    fn new(path: Option<std::path::PathBuf>) -> Self {
        LateLog {
            path,
            file: None,
            written: 0,
        }
    }

    fn is_on(&self) -> bool {
        self.path.is_some()
    }

    fn write(&mut self, raw: &str) {
        let Some(path) = self.path.clone() else {
            return;
        };
        if self.file.is_none() {
            match std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
            {
                Ok(f) => {
                    self.written = f.metadata().map_or(0, |m| m.len());
                    self.file = Some(std::io::BufWriter::new(f));
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "Cannot open the late-event log");
                    self.path = None;
                    return;
                }
            }
        }
        // One event per line: an event sent pretty-printed (an element of
        // a JSON array body) has line breaks, which JSON allows only as
        // white space between tokens (inside strings they are escaped), so
        // spaces in their place leave the same event.
        let line: std::borrow::Cow<str> = if raw.contains(['\n', '\r']) {
            raw.replace(['\n', '\r'], " ").into()
        } else {
            raw.into()
        };
        if let Some(f) = &mut self.file {
            let _ = f.write_all(line.as_bytes());
            let _ = f.write_all(b"\n");
            self.written += line.len() as u64 + 1;
        }
        if self.written > LATE_LOG_MAX {
            self.flush();
            self.file = None;
            let mut rotated = path.clone().into_os_string();
            rotated.push(".1");
            let _ = std::fs::rename(&path, rotated);
        }
    }

    fn flush(&mut self) {
        if let Some(f) = &mut self.file {
            let _ = f.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::LateLog;

    /// The late-event log holds one event per line, also for an event
    /// whose input text had line breaks; each line is the same event.
    #[test]
    fn the_late_log_has_one_event_per_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("late.ndjson");
        let mut log = LateLog::new(Some(path.clone()));
        let pretty = "{\n  \"type\": \"ev\",\r\n  \"ts\": 1,\n  \"s\": \"a\\nb\"\n}";
        log.write(pretty);
        log.write(r#"{"type":"ev","ts":2}"#);
        log.flush();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        let first: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(
            first,
            serde_json::from_str::<serde_json::Value>(pretty).unwrap()
        );
        assert_eq!(first["s"], "a\nb");
    }
}
