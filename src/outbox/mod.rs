//! The durable outbox between the engine and the channels (daemon.md 4).
//!
//! Each channel has a lane: a [`store::Store`] in `state_dir/outbox/<channel>/`
//! and one delivery task. [`Outbox::submit`] (the engine's thread) appends
//! the alert's record to the lane of every channel it names and returns; it
//! never waits on a receiver. The delivery task sends the lane's oldest
//! record, and removes it only once the channel accepted it, or refused it
//! for good; otherwise it retries the same record after an exponential,
//! jittered back-off. So each channel gets its alerts in submit order, a
//! failing one holds back only itself, and whatever is undelivered at
//! shutdown or a crash is delivered after the restart (at least once; the
//! alert id lets receivers drop a duplicate).
//!
//! A record holds the alert's JSON text (and the rule's description), not
//! Rust values, so a restarted daemon, even with other rules loaded,
//! delivers exactly what was recorded.
//!
//! Disk use is bounded by `max_pending` per channel: past it the oldest
//! undelivered records are dropped and counted
//! (`tocsin_deliveries_total{outcome="dropped"}`).

mod retry;
mod store;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::alert::Alert;
use crate::channel::{AlertRecord, Channel, ChannelError, DeliveryError};
use crate::config::ChannelConfig;
use crate::event::json;
use crate::metrics::{ChannelLabel, DeliveryLabels, Metrics};

pub use retry::Backoff;
use store::{Entry, Store};

/// How often written records are fsynced in the background.
const SYNC_INTERVAL: Duration = Duration::from_millis(200);

/// The record format's version, first in every record.
const RECORD_VERSION: u32 = 1;

/// How many alerts each lane remembers the delivery state of (console).
const TRACKED: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error(transparent)]
    Channel(#[from] ChannelError),
    #[error(
        "channel `{channel}`: retry.initial must be positive and retry.max at least retry.initial"
    )]
    Retry { channel: String },
    #[error("outbox of channel `{channel}` in `{path}`: {source}")]
    Store {
        channel: String,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The delivery outcomes counted in `tocsin_deliveries_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Delivered,
    Retry,
    /// Refused for good (or unreadable): dropped.
    Failed,
    /// Pushed out by the `max_pending` cap.
    Dropped,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Retry => "retry",
            Outcome::Failed => "failed",
            Outcome::Dropped => "dropped",
        }
    }
}

/// Where one alert stands on one channel (the console's alert page).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryState {
    /// Recorded, not yet accepted by the channel.
    Pending,
    Delivered,
    /// The last attempt failed and the alert will be sent again.
    Retrying {
        attempts: u32,
        last_error: String,
    },
    /// Refused for good by the receiver; dropped.
    Failed {
        reason: String,
    },
    /// Pushed out of the queue by the `max_pending` cap.
    Dropped,
}

/// A lane's delivery states, newest [`TRACKED`] alerts; in memory only.
#[derive(Default)]
struct Tracked {
    /// By alert id: the record's seq in the lane, the state, and when (ms
    /// since the epoch) the state was last set.
    by_id: std::collections::HashMap<String, (u64, DeliveryState, i64)>,
    /// Ids oldest first, for eviction.
    order: std::collections::VecDeque<String>,
}

pub struct Outbox {
    /// One lane per configured channel, by name.
    lanes: BTreeMap<String, Arc<Lane>>,
}

/// One channel: its queue, its sender, and what the delivery task needs.
struct Lane {
    name: String,
    dir: PathBuf,
    channel: Channel,
    backoff: Backoff,
    /// The cap on pending records (at least 1).
    max_pending: usize,
    /// Shared by `submit` (engine thread) and the delivery task; held only
    /// for an append, a read of one record or a cursor update, never across
    /// an await or an fsync.
    store: Mutex<Store>,
    /// Wakes the delivery task when a record is appended.
    wake: Notify,
    /// Dropped so far, to log the first drop and then every 1000th.
    dropped: AtomicU64,
    metrics: Arc<Metrics>,
    /// Delivery state of recent alerts, for the console. Never read by
    /// delivery itself; its lock is taken after, never while, the store's.
    tracked: Mutex<Tracked>,
}

impl Outbox {
    /// Builds every channel (reading secrets, checking addresses) and opens
    /// or recovers its queue. Touches no network.
    pub fn open(
        state_dir: &Path,
        channels: &BTreeMap<String, ChannelConfig>,
        max_pending: u64,
        metrics: Arc<Metrics>,
    ) -> Result<Outbox, OutboxError> {
        let mut lanes = BTreeMap::new();
        for (name, config) in channels {
            let channel = Channel::build(name, config)?;
            let backoff = match Channel::retry_config(config) {
                Some(r) => Backoff::from_config(&r).ok_or_else(|| OutboxError::Retry {
                    channel: name.clone(),
                })?,
                None => Backoff::default(),
            };
            let dir = state_dir.join("outbox").join(dir_name(name));
            let store_err = |source| OutboxError::Store {
                channel: name.clone(),
                path: dir.clone(),
                source,
            };
            let (store, recovery) = Store::open(&dir).map_err(store_err)?;
            if recovery.truncated > 0 {
                tracing::warn!(
                    channel = %name,
                    bytes = recovery.truncated,
                    "Cut a torn record from the end of the outbox (interrupted write)."
                );
            }
            for path in &recovery.damaged {
                tracing::error!(
                    channel = %name,
                    path = %path.display(),
                    "Outbox segment is damaged; alerts after the damage in it are lost."
                );
            }
            let lane = Lane {
                name: name.clone(),
                dir: dir.clone(),
                channel,
                backoff,
                max_pending: usize::try_from(max_pending).unwrap_or(usize::MAX).max(1),
                store: Mutex::new(store),
                wake: Notify::new(),
                dropped: AtomicU64::new(0),
                metrics: metrics.clone(),
                tracked: Mutex::new(Tracked::default()),
            };
            let (pending, dropped) = {
                let mut store = lane.lock();
                let dropped = store.drop_oldest(lane.max_pending).map_err(store_err)?;
                (store.len(), dropped)
            };
            lane.count_dropped(dropped);
            lane.set_pending(pending);
            if pending > 0 {
                tracing::info!(channel = %name, pending, "Outbox has undelivered alerts from before the restart.");
            }
            lanes.insert(name.clone(), Arc::new(lane));
        }
        Ok(Outbox { lanes })
    }

    /// Durably records the alert for each named channel: an append per
    /// channel, fsynced in the background (see [`Outbox::sync`]). Never
    /// waits on delivery. Alerts a channel does not send (`resolved` to a
    /// webhook with `send_resolved: false`) are skipped; an unknown channel
    /// name is logged and skipped. Every channel is tried; the first
    /// failure to write is returned.
    pub fn submit(&self, alert: &Alert, channels: &[String]) -> Result<(), OutboxError> {
        let mut record: Option<Vec<u8>> = None;
        let mut first_err = None;
        for (i, name) in channels.iter().enumerate() {
            if channels[..i].contains(name) {
                continue;
            }
            let Some(lane) = self.lanes.get(name) else {
                tracing::warn!(
                    channel = %name,
                    rule = %alert.rule.name,
                    "Alert names a channel that is not configured; not sent there."
                );
                continue;
            };
            if !lane.channel.wants(alert.status.as_str()) {
                continue;
            }
            let bytes = record.get_or_insert_with(|| encode_record(alert));
            match lane.push(bytes) {
                Ok(seq) => lane.track(&alert.id, seq, DeliveryState::Pending),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Spawns one delivery task per channel, and one that fsyncs the
    /// outbox periodically and once more at shutdown. All stop promptly
    /// when `shutdown` is cancelled; an alert being sent then stays pending.
    pub fn start(&self, shutdown: CancellationToken) -> Vec<JoinHandle<()>> {
        let mut handles: Vec<JoinHandle<()>> = self
            .lanes
            .values()
            .map(|lane| tokio::spawn(lane.clone().run(shutdown.clone())))
            .collect();
        let lanes: Arc<[Arc<Lane>]> = self.lanes.values().cloned().collect();
        handles.push(tokio::spawn(sync_loop(lanes, shutdown)));
        handles
    }

    /// Pending (undelivered) alerts per channel.
    pub fn pending(&self) -> Vec<(String, u64)> {
        self.lanes
            .values()
            .map(|l| (l.name.clone(), l.lock().len() as u64))
            .collect()
    }

    /// The delivery state of a recent alert on each channel that has it
    /// (the newest [`TRACKED`] alerts per channel, since the start).
    pub fn delivery(&self, id: &str) -> Vec<(String, DeliveryState, i64)> {
        self.lanes
            .values()
            .filter_map(|l| l.state(id).map(|(s, at)| (l.name.clone(), s, at)))
            .collect()
    }

    /// Fsyncs everything recorded so far. Blocks; call it before a
    /// checkpoint makes the alerts' events unreplayable.
    pub fn sync(&self) -> Result<(), OutboxError> {
        sync_lanes(self.lanes.values())
    }
}

impl Lane {
    fn lock(&self) -> MutexGuard<'_, Store> {
        // A panic while holding the lock leaves the store consistent
        // (every change is a whole record or cursor write).
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn store_err(&self, source: std::io::Error) -> OutboxError {
        OutboxError::Store {
            channel: self.name.clone(),
            path: self.dir.clone(),
            source,
        }
    }

    /// Appends a record; returns its seq.
    fn push(&self, record: &[u8]) -> Result<u64, OutboxError> {
        let (seq, pending, dropped) = {
            let mut store = self.lock();
            let seq = store.append(record).map_err(|e| self.store_err(e))?;
            let dropped = store
                .drop_oldest(self.max_pending)
                .map_err(|e| self.store_err(e))?;
            (seq, store.len(), dropped)
        };
        self.count_dropped(dropped);
        self.set_pending(pending);
        self.wake.notify_one();
        Ok(seq)
    }

    fn tracked(&self) -> MutexGuard<'_, Tracked> {
        self.tracked.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records where an alert stands (the console's view only). `Pending`
    /// never replaces the outcome of the same record: the delivery task may
    /// settle a record before `submit` gets to mark it pending.
    fn track(&self, id: &str, seq: u64, state: DeliveryState) {
        let at = crate::source::now().millis();
        let mut t = self.tracked();
        if state == DeliveryState::Pending
            && t.by_id
                .get(id)
                .is_some_and(|(s, old, _)| *s == seq && *old != DeliveryState::Pending)
        {
            return;
        }
        if t.by_id.insert(id.to_string(), (seq, state, at)).is_none() {
            t.order.push_back(id.to_string());
            while t.order.len() > TRACKED {
                if let Some(old) = t.order.pop_front() {
                    t.by_id.remove(&old);
                }
            }
        }
    }

    /// The state of an alert on this lane, and when it was set. A pending
    /// record no longer in the queue was dropped by the cap: delivery and
    /// refusal update the state before they remove the record.
    fn state(&self, id: &str) -> Option<(DeliveryState, i64)> {
        let (seq, state, at) = self.tracked().by_id.get(id).cloned()?;
        if matches!(
            state,
            DeliveryState::Pending | DeliveryState::Retrying { .. }
        ) && self.front().is_none_or(|front| seq < front.seq)
        {
            return Some((DeliveryState::Dropped, at));
        }
        Some((state, at))
    }

    fn count(&self, outcome: Outcome, n: u64) {
        self.metrics
            .deliveries
            .get_or_create(&DeliveryLabels {
                channel: self.name.clone(),
                outcome: outcome.as_str().to_string(),
            })
            .inc_by(n);
    }

    fn count_dropped(&self, n: u64) {
        if n == 0 {
            return;
        }
        self.count(Outcome::Dropped, n);
        let before = self.dropped.fetch_add(n, Ordering::Relaxed);
        if before == 0 || before / 1000 != (before + n) / 1000 {
            tracing::warn!(
                channel = %self.name,
                dropped_total = before + n,
                max_pending = self.max_pending,
                "Outbox is full: dropped the oldest undelivered alerts."
            );
        }
    }

    fn set_pending(&self, n: usize) {
        self.metrics
            .outbox_pending
            .get_or_create(&ChannelLabel {
                channel: self.name.clone(),
            })
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    fn front(&self) -> Option<Entry> {
        self.lock().front()
    }

    /// The record of a pending entry.
    fn load(&self, entry: &Entry) -> Result<AlertRecord, String> {
        let bytes = self.lock().read(entry).map_err(|e| e.to_string())?;
        decode_record(&bytes)
    }

    /// The head record is done (sent, refused, or unreadable).
    fn settle(&self, seq: u64, outcome: Outcome) {
        self.count(outcome, 1);
        let (removed, pending) = {
            let mut store = self.lock();
            let removed = store.remove_front(seq);
            (removed, store.len())
        };
        self.set_pending(pending);
        if let Err(e) = removed {
            // The record is out of the queue; a stale cursor on disk only
            // means it may be sent again after a restart.
            tracing::error!(channel = %self.name, error = %e, "Cannot update the outbox cursor.");
        }
    }

    /// The delivery task: oldest record first, retried until accepted or
    /// refused for good.
    async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut current: Option<(Entry, AlertRecord)> = None;
        let mut attempt: u32 = 0;
        loop {
            let Some(entry) = self.front() else {
                current = None;
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = self.wake.notified() => continue,
                }
            };
            let record = match current.take() {
                Some((e, r)) if e == entry => r,
                _ => {
                    attempt = 0;
                    match self.load(&entry) {
                        Ok(r) => {
                            // Recorded before a restart: not tracked yet.
                            if !self.tracked().by_id.contains_key(r.id()) {
                                self.track(r.id(), entry.seq, DeliveryState::Pending);
                            }
                            r
                        }
                        Err(_) if self.front() != Some(entry) => continue, // dropped meanwhile
                        Err(e) => {
                            tracing::error!(
                                channel = %self.name,
                                seq = entry.seq,
                                error = %e,
                                "Outbox record is unreadable; dropped."
                            );
                            self.settle(entry.seq, Outcome::Failed);
                            continue;
                        }
                    }
                }
            };
            let result = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return,
                r = self.channel.deliver(&record) => r,
            };
            match result {
                Ok(()) => {
                    tracing::debug!(channel = %self.name, alert = record.id(), "Alert delivered.");
                    self.track(record.id(), entry.seq, DeliveryState::Delivered);
                    self.settle(entry.seq, Outcome::Delivered);
                }
                Err(DeliveryError::Permanent(reason)) => {
                    tracing::error!(
                        channel = %self.name,
                        alert = record.id(),
                        rule = record.rule(),
                        %reason,
                        "Receiver refused the alert; dropped."
                    );
                    self.track(record.id(), entry.seq, DeliveryState::Failed { reason });
                    self.settle(entry.seq, Outcome::Failed);
                }
                Err(DeliveryError::Retry { reason, after }) => {
                    self.count(Outcome::Retry, 1);
                    let mut delay = self.backoff.delay(attempt);
                    if let Some(hint) = after {
                        delay = delay.max(hint.min(self.backoff.max));
                    }
                    tracing::warn!(
                        channel = %self.name,
                        alert = record.id(),
                        attempt = attempt + 1,
                        retry_in_ms = delay.as_millis() as u64,
                        %reason,
                        "Delivery failed; will retry."
                    );
                    attempt = attempt.saturating_add(1);
                    self.track(
                        record.id(),
                        entry.seq,
                        DeliveryState::Retrying {
                            attempts: attempt,
                            last_error: reason,
                        },
                    );
                    current = Some((entry, record));
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }
}

async fn sync_loop(lanes: Arc<[Arc<Lane>]>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(SYNC_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stop = tokio::select! {
            _ = shutdown.cancelled() => true,
            _ = tick.tick() => false,
        };
        let l = lanes.clone();
        let synced = tokio::task::spawn_blocking(move || sync_lanes(l.iter())).await;
        match synced {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "Cannot sync the outbox."),
            Err(e) => tracing::error!(error = %e, "Outbox sync task failed."),
        }
        if stop {
            return;
        }
    }
}

fn sync_lanes<'a>(lanes: impl Iterator<Item = &'a Arc<Lane>>) -> Result<(), OutboxError> {
    let mut first_err = None;
    for lane in lanes {
        let files = lane.lock().unsynced();
        let result = files.and_then(|files| files.iter().try_for_each(|f| f.sync_data()));
        if let Err(e) = result {
            first_err.get_or_insert(lane.store_err(e));
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// A channel name as a directory name: ASCII letters, digits, `_` and `-`
/// kept, every other byte `%XX`, so no name can leave `outbox/`.
fn dir_name(channel: &str) -> String {
    let mut s = String::with_capacity(channel.len());
    for b in channel.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    if s.is_empty() {
        s.push('%');
    }
    s
}

/// A record: `{"v":1,"description":…,"alert":<the alert JSON, verbatim>}`.
fn encode_record(alert: &Alert) -> Vec<u8> {
    let alert_json = alert.to_json();
    let mut s = String::with_capacity(alert_json.len() + 64);
    s.push_str("{\"v\":");
    s.push_str(&RECORD_VERSION.to_string());
    s.push_str(",\"description\":");
    match &alert.rule.description {
        Some(d) => json::write_string(&mut s, d),
        None => s.push_str("null"),
    }
    s.push_str(",\"alert\":");
    s.push_str(&alert_json);
    s.push('}');
    s.into_bytes()
}

fn decode_record(bytes: &[u8]) -> Result<AlertRecord, String> {
    #[derive(Deserialize)]
    struct Envelope {
        v: u32,
        description: Option<String>,
        alert: Box<RawValue>,
    }
    let env: Envelope = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if env.v != RECORD_VERSION {
        return Err(format!("unknown record version {}", env.v));
    }
    AlertRecord::from_json(env.alert.get().to_string(), env.description).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_cannot_escape_the_outbox() {
        assert_eq!(dir_name("ops"), "ops");
        assert_eq!(dir_name("../x"), "%2E%2E%2Fx");
        assert_eq!(dir_name(""), "%");
    }

    #[test]
    fn record_keeps_the_alert_json_verbatim() {
        let rec = br#"{"v":1,"description":"d","alert":{"id":"x","b":1.50,"a":[]}}"#;
        let r = decode_record(rec).unwrap();
        assert_eq!(r.json, r#"{"id":"x","b":1.50,"a":[]}"#);
        assert_eq!(r.description.as_deref(), Some("d"));
        assert!(decode_record(br#"{"v":2,"description":null,"alert":{}}"#).is_err());
    }
}
