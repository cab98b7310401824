//! `tocsin run`: wires sources → log writer → engine thread → outbox →
//! channels, the
//! admin API, reload (SIGHUP, `POST /v1/reload`, file watcher), idle ticks
//! and clean shutdown. Shutdown is passed in as a future, so tests and the
//! CLI drive it alike.

mod engine_thread;
mod log_syncer;
mod log_writer;
mod recover;
pub mod reload;

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, SourceConfig};
use crate::lang::{self, Options};
use crate::metrics::Metrics;
use crate::outbox::Outbox;
use crate::pipeline::Pipeline;
use crate::source::{EngineMsg, Ingest, now};

/// Capacity of the queue from the sources into the log writer, in batches.
const LOG_QUEUE: usize = 256;
/// Capacity of the queue from the log writer into the engine, in messages;
/// the events in it are bounded by [`ENGINE_BACKLOG`].
const ENGINE_QUEUE: usize = 1024;
/// Budget of events logged (acknowledged) and not yet evaluated: past it
/// sources stop offering (HTTP 503); at twice it the log writer waits. It
/// bounds the memory between the log writer and the engine and how far
/// evaluation (and so alerts) may lag behind acknowledgements: ~45 ms of
/// the shipped rules' evaluation, ~15 ms without rule work. 16k events
/// gave 5x the ingest-to-alert p99 under saturating load and no more
/// throughput (docs/performance.md section 5).
const ENGINE_BACKLOG: usize = 4_096;
/// How many recent alerts `/v1/alerts` can show.
const RECENT_ALERTS: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Rules(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Secret(String),
    #[error(transparent)]
    Outbox(#[from] crate::outbox::OutboxError),
    #[error("recovery failed: {0}")]
    Recover(#[from] recover::RecoverError),
    #[error("{0}")]
    Config(String),
    #[error("cannot create state directory {path}: {source}")]
    StateDir {
        path: String,
        source: std::io::Error,
    },
}

/// One rule as `/v1/rules` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RuleView {
    pub name: String,
    pub kind: &'static str,
    pub file: String,
    pub line: usize,
    pub keys: u64,
    pub alerts: u64,
    /// Matches before throttling (console only).
    #[serde(skip)]
    pub matches: u64,
    /// The loaded rule: severity, source text, labels (console only).
    #[serde(skip)]
    pub rule: Arc<crate::lang::program::Rule>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ReloadView {
    pub ok: bool,
    pub time: String,
    pub errors: Vec<String>,
}

/// State the API and the engine thread share. Only small, off-hot-path
/// values sit behind locks here; the engine's state is the thread's own.
pub struct Shared {
    pub config: Config,
    pub metrics: Arc<Metrics>,
    pub ready: AtomicBool,
    pub default_notify: Vec<String>,
    /// The log writer's input queue. Taken at shutdown: the log writer
    /// stops (after a last checkpoint) once every sender is gone, and the
    /// engine thread after it.
    engine_tx: Mutex<Option<mpsc::Sender<EngineMsg>>>,
    /// Alert JSON texts, oldest first; `Arc` so readers copy pointers, not
    /// texts, while they hold the lock.
    recent: Mutex<VecDeque<Arc<str>>>,
    rules: Mutex<Vec<RuleView>>,
    last_reload: Mutex<ReloadView>,
    /// Serializes reloads.
    pub reload_lock: tokio::sync::Mutex<()>,
    /// Idempotency answers of the HTTP source (durable through log and checkpoint).
    pub idempotency: Arc<crate::source::IdempotencyStore>,
    /// Wall-clock time (ms) of the last checkpoint, 0 before any.
    last_checkpoint: AtomicI64,
    /// The outbox, for the console's delivery states and pending counts.
    pub outbox: Arc<Outbox>,
    /// The last rejected inputs per source (written by the sources).
    pub rejects: Arc<crate::source::RejectSamples>,
    /// The running rules' stateless part, for the sources to prepare
    /// batches with (swapped by the engine thread on reload).
    pub preparer: Arc<crate::source::PreparerSlot>,
    /// Late events per source (the metric has no source label).
    late: Mutex<std::collections::BTreeMap<String, u64>>,
    /// The engine's watermark in ms, `i64::MIN` before the first event.
    watermark: AtomicI64,
    /// Time of the newest alert of each rule.
    last_alert: Mutex<std::collections::HashMap<String, crate::event::EventTime>>,
}

impl Shared {
    pub fn remember_alert(&self, json: String) {
        let mut r = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if r.len() == RECENT_ALERTS {
            r.pop_front();
        }
        r.push_back(Arc::from(json));
    }

    /// The most recent alerts, newest first.
    pub fn recent_alerts(&self, limit: usize) -> Vec<String> {
        let r = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        r.iter().rev().take(limit).map(|a| a.to_string()).collect()
    }

    /// Every remembered alert's JSON text, newest first (shared, not copied).
    pub fn recent_alert_texts(&self) -> Vec<Arc<str>> {
        let r = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        r.iter().rev().cloned().collect()
    }

    /// Notes an alert's rule and time (the console's "last alert").
    pub fn note_alert(&self, rule: &str, time: crate::event::EventTime) {
        let mut m = self.last_alert.lock().unwrap_or_else(|p| p.into_inner());
        match m.get_mut(rule) {
            Some(t) => *t = (*t).max(time),
            None => {
                m.insert(rule.to_string(), time);
            }
        }
    }

    pub fn last_alert(&self, rule: &str) -> Option<crate::event::EventTime> {
        let m = self.last_alert.lock().unwrap_or_else(|p| p.into_inner());
        m.get(rule).copied()
    }

    pub fn count_late(&self, source: &str, n: u64) {
        let mut m = self.late.lock().unwrap_or_else(|p| p.into_inner());
        match m.get_mut(source) {
            Some(c) => *c += n,
            None => {
                m.insert(source.to_string(), n);
            }
        }
    }

    pub fn late(&self, source: &str) -> u64 {
        let m = self.late.lock().unwrap_or_else(|p| p.into_inner());
        m.get(source).copied().unwrap_or(0)
    }

    pub fn set_watermark(&self, w: crate::event::EventTime) {
        self.watermark.store(w.millis(), Ordering::Relaxed);
    }

    /// The engine's watermark; `EventTime::MIN` before the first event.
    pub fn watermark(&self) -> crate::event::EventTime {
        crate::event::EventTime(self.watermark.load(Ordering::Relaxed))
    }

    pub fn set_last_checkpoint(&self, ms: i64) {
        self.last_checkpoint.store(ms, Ordering::Relaxed);
    }

    pub fn last_checkpoint(&self) -> i64 {
        self.last_checkpoint.load(Ordering::Relaxed)
    }

    pub fn engine_sender(&self) -> Option<mpsc::Sender<EngineMsg>> {
        self.engine_tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn close_engine(&self) {
        self.engine_tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
    }

    pub fn set_rules_view(&self, v: Vec<RuleView>) {
        *self.rules.lock().unwrap_or_else(|p| p.into_inner()) = v;
    }

    pub fn rules_view(&self) -> Vec<RuleView> {
        self.rules.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn last_reload(&self) -> ReloadView {
        self.last_reload
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn set_last_reload(&self, v: ReloadView) {
        *self.last_reload.lock().unwrap_or_else(|p| p.into_inner()) = v;
    }

    pub fn rule_options(&self) -> Options {
        Options {
            channels: Some(self.config.channel_names()),
        }
    }
}

/// Reads a secret from `*_env` or `*_file`.
pub fn secret(
    env: Option<&str>,
    file: Option<&std::path::Path>,
    what: &str,
) -> Result<Option<String>, StartError> {
    if let Some(var) = env {
        return match std::env::var(var) {
            Ok(v) if !v.is_empty() => Ok(Some(v)),
            _ => Err(StartError::Secret(format!(
                "{what}: environment variable {var} is not set"
            ))),
        };
    }
    if let Some(path) = file {
        return std::fs::read_to_string(path)
            .map(|s| Some(s.trim().to_string()))
            .map_err(|e| {
                StartError::Secret(format!("{what}: cannot read {}: {e}", path.display()))
            });
    }
    Ok(None)
}

/// Runs the daemon until `shutdown` completes; then drains in-flight events
/// and returns.
/// Where the admin API listens when `admin.listen` is not set.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9464";

pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), StartError> {
    let metrics = Arc::new(Metrics::new());
    std::fs::create_dir_all(&config.state_dir).map_err(|source| StartError::StateDir {
        path: config.state_dir.display().to_string(),
        source,
    })?;
    let opts = Options {
        channels: Some(config.channel_names()),
    };
    let loaded = lang::load(&config.rules, &opts).map_err(|e| StartError::Rules(e.to_string()))?;
    if loaded.has_errors() {
        return Err(StartError::Rules(format!(
            "invalid rules:\n{}",
            loaded.render()
        )));
    }
    tracing::info!(rules = loaded.program.rules.len(), path = %config.rules.display(), "Rules loaded");

    let outbox = Arc::new(Outbox::open(
        &config.state_dir,
        &config.channels,
        config.outbox.max_pending.unwrap_or(100_000),
        metrics.clone(),
    )?);
    let cancel = CancellationToken::new();
    let delivery = outbox.start(cancel.child_token());

    let (tx, rx) = mpsc::channel::<EngineMsg>(LOG_QUEUE);
    let shared = Arc::new(Shared {
        default_notify: config.default_notify.clone(),
        config: config.clone(),
        metrics: metrics.clone(),
        ready: AtomicBool::new(false),
        engine_tx: Mutex::new(Some(tx.clone())),
        recent: Mutex::new(VecDeque::new()),
        rules: Mutex::new(Vec::new()),
        last_reload: Mutex::new(ReloadView {
            ok: true,
            time: now().rfc3339(),
            errors: Vec::new(),
        }),
        reload_lock: tokio::sync::Mutex::new(()),
        idempotency: Arc::new(crate::source::IdempotencyStore::default()),
        last_checkpoint: AtomicI64::new(0),
        outbox: outbox.clone(),
        rejects: Arc::new(crate::source::RejectSamples::default()),
        preparer: Arc::new(crate::source::PreparerSlot::default()),
        late: Mutex::new(std::collections::BTreeMap::new()),
        watermark: AtomicI64::new(i64::MIN),
        last_alert: Mutex::new(std::collections::HashMap::new()),
    });

    // The admin API answers from the start (`/readyz` 503 until recovery is
    // done, daemon.md 3): on its own listener, `admin.listen` (by default
    // 127.0.0.1:9464), or on the HTTP source whose `listen` it names; that
    // source's events are answered 503 "recovering" until then.
    let mut tasks = tokio::task::JoinSet::new();
    let admin_token = secret(
        config.admin.token_env.as_deref(),
        config.admin.token_file.as_deref(),
        "admin.token",
    )?;
    let api = crate::api::router(shared.clone(), admin_token.clone());
    let admin_addr = config
        .admin
        .listen
        .clone()
        .unwrap_or_else(|| DEFAULT_ADMIN_LISTEN.to_string());
    let shares_admin = config.sources.iter().find_map(|s| match s {
        SourceConfig::Http {
            listen,
            header_timeout,
            ..
        } if *listen == admin_addr => Some(*header_timeout),
        _ => None,
    });
    let (routes_tx, routes) = tokio::sync::watch::channel(crate::api::recovering(api.clone()));
    {
        let listener = bind(&admin_addr).await?;
        tracing::info!(listen = %admin_addr, "Admin API listening");
        match shares_admin {
            Some(header_timeout) => tasks.spawn(crate::source::serve::serve_routes(
                listener,
                routes,
                cancel.clone(),
                header_timeout.map_or(crate::source::serve::HEADER_TIMEOUT, |d| dur(d.0)),
            )),
            None => tasks.spawn(crate::source::serve::serve(
                listener,
                crate::api::with_error_answers(api.clone()),
                cancel.clone(),
                crate::source::serve::HEADER_TIMEOUT,
            )),
        };
    }

    let decoder = crate::decode::Decoder::new(config.events.decode_config());
    let policy = crate::wal::FsyncPolicy::parse(config.durability.fsync.as_deref())
        .map_err(StartError::Config)?;
    let mut pipeline = Pipeline::with_parts(
        &loaded.program,
        config.events.max_delay.0,
        config.engine.threads(),
        true,
    );
    let recovered = {
        let state_dir = config.state_dir.clone();
        let shared = shared.clone();
        let outbox = outbox.clone();
        let decoder = decoder.clone();
        let on_disk = loaded.program.clone();
        // Recovery is synchronous and may be long: keep it off the async workers.
        tokio::task::spawn_blocking(move || {
            let r = recover::recover(
                &state_dir,
                policy,
                &mut pipeline,
                &on_disk,
                &decoder,
                &shared,
                &outbox,
            );
            r.map(|rec| (rec, pipeline))
        })
        .await
        .map_err(|e| StartError::Config(format!("recovery task failed: {e}")))??
    };
    let (recovered, pipeline) = recovered;
    tracing::info!(
        batches_replayed = recovered.replayed_batches,
        rules_restored = recovered.restored_rules,
        engine_threads = pipeline.parts(),
        "Recovery done"
    );
    let resume: Vec<crate::source::FileOffset> =
        recovered.durable.offsets.values().cloned().collect();
    let settings = engine_thread::EngineSettings {
        max_delay_ms: config.events.max_delay.0,
        idle_timeout_ms: config.events.idle_timeout.0,
        late_log: config.late_events.clone(),
        state_dir: config.state_dir.clone(),
    };
    let checkpoint_every = Duration::from_millis(
        u64::try_from(config.durability.checkpoint_every.map_or(30_000, |d| d.0)).unwrap_or(30_000),
    );
    let recover::Durable {
        wal,
        offsets,
        previous_checkpoint_lsn,
    } = recovered.durable;
    // Sources prepare batches for the recovered rules from the first one.
    shared.preparer.set(pipeline.preparer());
    let (logged_tx, logged_rx) = std::sync::mpsc::sync_channel(ENGINE_QUEUE);
    let backlog = Arc::new(crate::source::Backlog::new(ENGINE_BACKLOG));
    let (written_tx, written_rx) = std::sync::mpsc::channel();
    let engine = {
        let shared = shared.clone();
        let outbox = outbox.clone();
        let links = engine_thread::EngineLinks {
            rx: logged_rx,
            written: written_tx,
            requests: tx.downgrade(),
            backlog: backlog.clone(),
        };
        std::thread::Builder::new()
            .name("tocsin-engine".into())
            .stack_size(64 << 20)
            .spawn(move || engine_thread::run(pipeline, links, shared, outbox, settings, offsets))
            .map_err(|e| StartError::Rules(format!("cannot start the engine thread: {e}")))?
    };
    let log_writer = {
        let answers = shared.idempotency.clone();
        let links = log_writer::LogLinks {
            rx,
            tx: logged_tx,
            written: written_rx,
            backlog: backlog.clone(),
        };
        let state = log_writer::LogState {
            wal,
            previous_checkpoint_lsn,
        };
        std::thread::Builder::new()
            .name("tocsin-log".into())
            .spawn(move || log_writer::run(links, answers, checkpoint_every, state))
            .map_err(|e| StartError::Rules(format!("cannot start the log writer thread: {e}")))?
    };

    let ingest = Ingest {
        decoder,
        max_event_bytes: usize::try_from(config.events.max_event_bytes.0).unwrap_or(usize::MAX),
        max_future_ms: config.events.max_future.0,
        metrics: metrics.clone(),
        tx: tx.clone(),
        backlog,
        rejects: shared.rejects.clone(),
        preparer: shared.preparer.clone(),
    };
    drop(tx);

    // Listeners: bind everything before reporting ready, so errors are fatal at start.
    let mut kafka_threads = Vec::new();
    for src in &config.sources {
        match src {
            SourceConfig::Http {
                listen,
                token_env,
                token_file,
                max_body,
                header_timeout,
                body_timeout,
            } => {
                let token = secret(
                    token_env.as_deref(),
                    token_file.as_deref(),
                    "http source token",
                )?;
                let http = Arc::new(
                    crate::source::http::HttpSource::new(
                        ingest.clone(),
                        token,
                        usize::try_from(max_body.map_or(16 << 20, |s| s.0)).unwrap_or(usize::MAX),
                        shared.idempotency.clone(),
                    )
                    .with_body_timeout(body_timeout.map(|d| dur(d.0))),
                );
                let header_timeout =
                    header_timeout.map_or(crate::source::serve::HEADER_TIMEOUT, |d| dur(d.0));
                if *listen == admin_addr {
                    // Bound before recovery: events are taken from now on.
                    let routes = http.router().merge(api.clone());
                    let _ = routes_tx.send(crate::api::with_error_answers(routes));
                    tracing::info!(listen = %listen, "HTTP source listening (with the admin API)");
                    continue;
                }
                let listener = bind(listen).await?;
                tracing::info!(listen = %listen, "HTTP source listening");
                tasks.spawn(crate::source::serve::serve(
                    listener,
                    crate::api::with_error_answers(http.router()),
                    cancel.clone(),
                    header_timeout,
                ));
            }
            SourceConfig::Tcp { listen, max_line } => {
                let listener = bind(listen).await?;
                tracing::info!(listen = %listen, "TCP source listening");
                let max_line = max_line.map_or(ingest.max_event_bytes, |s| {
                    usize::try_from(s.0).unwrap_or(usize::MAX)
                });
                tasks.spawn(crate::source::tcp::serve(
                    listener,
                    ingest.clone(),
                    max_line,
                    cancel.clone(),
                ));
            }
            SourceConfig::File { path, start_at } => {
                let cfg = crate::source::file::FileSourceConfig {
                    pattern: path.clone(),
                    // Typed (and checked) when the config is read.
                    start_at: start_at.unwrap_or_default(),
                    poll_interval: Duration::from_secs(1),
                    max_line: ingest.max_event_bytes,
                };
                tracing::info!(path = %path, "File source tailing");
                tasks.spawn(crate::source::file::run(
                    cfg,
                    ingest.clone(),
                    resume.clone(),
                    cancel.clone(),
                ));
            }
            SourceConfig::Kafka { .. } => {
                let k = crate::kafka::KafkaSettings::from_config(&config, src)
                    .map_err(StartError::Config)?
                    .ok_or_else(|| StartError::Config("kafka source".into()))?;
                let s = shared.clone();
                let hook: crate::kafka::AlertHook = Arc::new(move |a| {
                    s.note_alert(&a.rule.name, a.time);
                    s.remember_alert(a.to_json());
                });
                let (program, decoder) = (loaded.program.clone(), ingest.decoder.clone());
                let t = crate::kafka::spawn(
                    k,
                    program,
                    decoder,
                    outbox.clone(),
                    metrics.clone(),
                    hook,
                    cancel.clone(),
                );
                kafka_threads.push(t.await.map_err(StartError::Config)?);
            }
        }
    }
    // The routes hold the sources' senders to the log writer, which ends
    // when the last one is gone: only the serving tasks keep them.
    drop((routes_tx, api));
    // Idle ticks, once a second; every 100 ms with `fsync: interval`, whose
    // log writer syncs what is unsynced at each tick (so nothing
    // acknowledged waits longer than that for its sync when traffic stops).
    {
        let tx = ingest.tx.clone();
        let c = cancel.clone();
        let period = match policy {
            crate::wal::FsyncPolicy::Interval => crate::wal::SYNC_INTERVAL,
            _ => Duration::from_secs(1),
        };
        tasks.spawn(async move {
            let mut every = tokio::time::interval(period);
            loop {
                tokio::select! {
                    _ = c.cancelled() => break,
                    _ = every.tick() => { let _ = tx.try_send(EngineMsg::Tick(now())); }
                }
            }
        });
    }
    drop(ingest);
    // Reload on SIGHUP and on changes in the rules location.
    tasks.spawn(reload::on_sighup(shared.clone(), cancel.clone()));
    tasks.spawn(reload::watch(shared.clone(), cancel.clone()));

    shared.ready.store(true, Ordering::SeqCst);
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    tracing::info!("Ready");

    shutdown.await;
    tracing::info!("Shutting down: draining in-flight events");
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    cancel.cancel();
    while tasks.join_next().await.is_some() {}
    for t in kafka_threads {
        let _ = tokio::task::spawn_blocking(move || t.join()).await;
    }
    shared.close_engine();
    let joined = tokio::task::spawn_blocking(move || (log_writer.join(), engine.join())).await;
    match joined {
        Ok((Ok(()), Ok(()))) => {}
        _ => tracing::error!("The log writer or the engine thread ended abnormally"),
    }
    for d in delivery {
        let _ = d.await;
    }
    tracing::info!("Stopped");
    Ok(())
}

fn dur(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

async fn bind(addr: &str) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Listen {
            addr: addr.to_string(),
            source,
        })
}
