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
use crate::event::EventTime;
use crate::metrics::{AlertLabels, RuleLabel};
use crate::outbox::Outbox;
use crate::pipeline::Pipeline;
use crate::source::{EngineMsg, now};

/// Settings of the engine thread.
pub struct EngineSettings {
    pub max_delay_ms: i64,
    pub idle_timeout_ms: Option<i64>,
    pub late_log: Option<std::path::PathBuf>,
}

/// Counters already published to Prometheus, per rule name.
#[derive(Default, Clone, Copy)]
struct Published {
    matches: u64,
    alerts: [u64; 2],
    throttled: u64,
}

pub fn run(
    mut pipeline: Pipeline,
    mut rx: mpsc::Receiver<EngineMsg>,
    shared: Arc<Shared>,
    outbox: Arc<Outbox>,
    settings: EngineSettings,
) {
    let mut alerts: Vec<Alert> = Vec::new();
    let mut last_accept = now();
    let mut published: HashMap<String, Published> = HashMap::new();
    let mut last_view = Instant::now() - Duration::from_secs(10);
    let mut late_log = LateLog::new(settings.late_log.clone());
    publish(&pipeline, &shared, &mut published);
    while let Some(msg) = rx.blocking_recv() {
        match msg {
            EngineMsg::Batch(batch) => {
                let mut accepted = 0;
                for ev in batch.events {
                    let raw = ev.raw.clone();
                    match pipeline.push(ev, &mut alerts) {
                        Ok(()) => accepted += 1,
                        Err(_) => {
                            shared.metrics.events_late.inc();
                            late_log.write(&raw);
                        }
                    }
                }
                if accepted > 0 {
                    last_accept = now();
                }
                deliver(&mut alerts, &shared, &outbox, &pipeline);
                if let Some(done) = batch.done {
                    let _ = done.send(());
                }
            }
            EngineMsg::Tick(wall) => {
                if let Some(idle) = settings.idle_timeout_ms {
                    if wall.millis().saturating_sub(last_accept.millis()) >= idle {
                        pipeline.advance(wall.saturating_sub(settings.max_delay_ms), &mut alerts);
                        deliver(&mut alerts, &shared, &outbox, &pipeline);
                    }
                }
                let w = pipeline.watermark();
                if w > EventTime::MIN {
                    let lag = (wall.millis().saturating_sub(w.millis())) as f64 / 1000.0;
                    shared.metrics.watermark_lag_seconds.set(lag);
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
        if last_view.elapsed() >= Duration::from_millis(200) {
            publish(&pipeline, &shared, &mut published);
            last_view = Instant::now();
        }
    }
    // The queue closed: every source has stopped. Publish the final state.
    publish(&pipeline, &shared, &mut published);
    late_log.flush();
    tracing::info!("Engine stopped");
}

fn deliver(alerts: &mut Vec<Alert>, shared: &Shared, outbox: &Outbox, pipeline: &Pipeline) {
    let _ = pipeline;
    for a in alerts.drain(..) {
        let channels = if a.rule.notify.is_empty() {
            &shared.default_notify
        } else {
            &a.rule.notify
        };
        if let Err(e) = outbox.submit(&a, channels) {
            tracing::error!(error = %e, alert = %a.id, "Cannot record alert in the outbox");
        }
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
        });
    }
    shared.set_rules_view(view);
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
