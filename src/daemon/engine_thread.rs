//! The engine thread: the only owner of the [`Pipeline`]. It takes batches,
//! idle ticks and reloads from one bounded queue, feeds the pipeline, hands
//! alerts to the outbox and publishes counters. Synchronous by design.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::Shared;
use crate::alert::Alert;
use crate::checkpoint::{self, Checkpoint};
use crate::event::EventTime;
use crate::metrics::{AlertLabels, ChannelLabel, RuleLabel};
use crate::outbox::Outbox;
use crate::pipeline::Pipeline;
use crate::source::FileOffset;
use crate::source::{EngineMsg, now};
use crate::wal::{Record, Wal, encode_batch};

/// Settings of the engine thread.
pub struct EngineSettings {
    pub max_delay_ms: i64,
    pub idle_timeout_ms: Option<i64>,
    pub late_log: Option<std::path::PathBuf>,
    pub checkpoint_every: Duration,
    pub state_dir: std::path::PathBuf,
}

/// Messages taken at once: their log records share one fsync (group commit).
const GROUP: usize = 64;

/// Counters already published to Prometheus, per rule name.
#[derive(Default, Clone, Copy)]
struct Published {
    matches: u64,
    alerts: [u64; 2],
    throttled: u64,
}

/// What the engine thread owns besides the pipeline.
pub struct Durable {
    pub wal: Wal,
    /// Position of each tailed file after its last logged line.
    pub offsets: HashMap<String, FileOffset>,
    /// LSN of the newest checkpoint before the last one. The log is cut only
    /// behind it, so falling back to that checkpoint (when the newest is
    /// corrupt) still finds every record it needs.
    pub previous_checkpoint_lsn: u64,
}

pub fn run(
    mut pipeline: Pipeline,
    mut rx: mpsc::Receiver<EngineMsg>,
    shared: Arc<Shared>,
    outbox: Arc<Outbox>,
    settings: EngineSettings,
    mut durable: Durable,
) {
    let mut alerts: Vec<Alert> = Vec::new();
    let mut last_accept = now();
    let mut published: HashMap<String, Published> = HashMap::new();
    let mut last_view = Instant::now() - Duration::from_secs(10);
    let mut last_checkpoint = Instant::now();
    let mut late_log = LateLog::new(settings.late_log.clone());
    publish(&pipeline, &shared, &mut published);
    let mut group: Vec<EngineMsg> = Vec::with_capacity(GROUP);
    while let Some(first) = rx.blocking_recv() {
        group.push(first);
        while group.len() < GROUP {
            match rx.try_recv() {
                Ok(m) => group.push(m),
                Err(_) => break,
            }
        }
        // 1. Log every batch, then one sync for all of them.
        let mut logged = vec![true; group.len()];
        for (i, msg) in group.iter().enumerate() {
            if let EngineMsg::Batch(b) = msg {
                let r = durable.wal.append_with(|out| {
                    encode_batch(
                        out,
                        &b.source,
                        b.events.iter().map(|e| (e.time.0, &*e.raw)),
                        b.offset.as_ref(),
                        b.idempotent.as_ref(),
                    )
                });
                if let Err(e) = r {
                    tracing::error!(error = %e, "Cannot write to the write-ahead log; refusing the batch");
                    logged[i] = false;
                }
            }
        }
        if let Err(e) = durable.wal.sync() {
            tracing::error!(error = %e, "Cannot sync the write-ahead log; refusing the batches");
            logged.iter_mut().for_each(|l| *l = false);
        }
        // 2. Evaluate, in arrival order; acknowledge what is logged.
        for (msg, ok) in group.drain(..).zip(logged) {
            match msg {
                EngineMsg::Batch(batch) => {
                    if !ok {
                        continue; // `done` dropped: the sender sees a failure.
                    }
                    if let Some(i) = &batch.idempotent {
                        shared.idempotency.insert(i);
                    }
                    if let Some(o) = &batch.offset {
                        durable.offsets.insert(o.path.clone(), o.clone());
                    }
                    let mut accepted = 0;
                    for ev in batch.events {
                        let raw = ev.raw.clone();
                        match pipeline.push(ev, &mut alerts) {
                            Ok(()) => accepted += 1,
                            Err(_) => {
                                shared.metrics.events_late.inc();
                                shared.count_late(&batch.source);
                                late_log.write(&raw);
                            }
                        }
                    }
                    if accepted > 0 {
                        last_accept = now();
                    }
                    deliver(&mut alerts, &shared, &outbox);
                    if let Some(done) = batch.done {
                        let _ = done.send(());
                    }
                }
                EngineMsg::Tick(wall) => {
                    if let Some(idle) = settings.idle_timeout_ms {
                        let target = wall.saturating_sub(settings.max_delay_ms);
                        if wall.millis().saturating_sub(last_accept.millis()) >= idle
                            && target > pipeline.watermark()
                        {
                            // Logged first, so recovery replays the same advance.
                            let logged = durable
                                .wal
                                .append(&Record::Watermark(target.0))
                                .and_then(|_| durable.wal.sync_now());
                            match logged {
                                Ok(()) => {
                                    pipeline.advance(target, &mut alerts);
                                    deliver(&mut alerts, &shared, &outbox);
                                }
                                Err(e) => {
                                    tracing::error!(error = %e, "Cannot log an idle advance; skipping it")
                                }
                            }
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
                EngineMsg::Reload { program, done } => {
                    pipeline.reload(&program);
                    tracing::info!(rules = program.rules.len(), "Rules reloaded");
                    last_view = Instant::now() - Duration::from_secs(10);
                    let _ = done.send(());
                }
            }
        }
        if last_view.elapsed() >= Duration::from_millis(200) {
            publish(&pipeline, &shared, &mut published);
            last_view = Instant::now();
        }
        if last_checkpoint.elapsed() >= settings.checkpoint_every {
            checkpoint(&pipeline, &shared, &outbox, &settings, &mut durable);
            last_checkpoint = Instant::now();
        }
    }
    // The queue closed: every source has stopped.
    checkpoint(&pipeline, &shared, &outbox, &settings, &mut durable);
    publish(&pipeline, &shared, &mut published);
    late_log.flush();
    tracing::info!("Engine stopped");
}

/// Writes a checkpoint covering everything logged so far, then drops the
/// log segments it covers. Alerts are made durable in the outbox first.
pub fn checkpoint(
    pipeline: &Pipeline,
    shared: &Shared,
    outbox: &Outbox,
    settings: &EngineSettings,
    durable: &mut Durable,
) {
    let started = Instant::now();
    if let Err(e) = durable
        .wal
        .sync_now()
        .map_err(|e| e.to_string())
        .and_then(|()| outbox.sync().map_err(|e| e.to_string()))
    {
        tracing::error!(error = %e, "Cannot sync before a checkpoint; skipping it");
        return;
    }
    let lsn = durable.wal.next_lsn();
    let cp = Checkpoint {
        lsn,
        written_at: now().0,
        pipeline: pipeline.snapshot(),
        file_offsets: durable.offsets.values().map(Into::into).collect(),
        idempotency: shared.idempotency.list().iter().map(Into::into).collect(),
    };
    match checkpoint::write(&settings.state_dir, &cp) {
        Ok(path) => {
            durable.wal.truncate_before(durable.previous_checkpoint_lsn);
            durable.previous_checkpoint_lsn = lsn;
            let secs = started.elapsed().as_secs_f64();
            shared.metrics.checkpoint_seconds.set(secs);
            shared.set_last_checkpoint(cp.written_at);
            tracing::debug!(path = %path.display(), lsn, seconds = secs, "Checkpoint written");
        }
        Err(e) => tracing::error!(error = %e, "Checkpoint failed; the log is kept"),
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

/// Copies engine counters into metrics and the `/v1/rules` view.
fn publish(pipeline: &Pipeline, shared: &Shared, published: &mut HashMap<String, Published>) {
    let engine = pipeline.engine();
    let stage = pipeline.stage().stats();
    let keys = engine.key_counts();
    let mut view = Vec::with_capacity(engine.rules().len());
    for (i, r) in engine.rules().iter().enumerate() {
        let label = RuleLabel {
            rule: r.name.clone(),
        };
        let now_p = Published {
            matches: engine.stats()[i].matches,
            alerts: stage.alerts[i],
            throttled: stage.throttled[i],
        };
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
        if let Some(f) = &mut self.file {
            let _ = f.write_all(raw.as_bytes());
            let _ = f.write_all(b"\n");
            self.written += raw.len() as u64 + 1;
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
