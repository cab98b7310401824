//! The outbox between the engine and the channels. PROVISIONAL: appends to
//! file channels and writes stdout channels synchronously; the durable,
//! retrying outbox replaces this (issue 5) behind the same interface.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::alert::Alert;
use crate::config::ChannelConfig;
use crate::metrics::{DeliveryLabels, Metrics};

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("outbox: {0}")]
    Io(#[from] std::io::Error),
}

pub struct Outbox {
    channels: BTreeMap<String, ChannelConfig>,
    files: Mutex<BTreeMap<String, std::fs::File>>,
    metrics: Arc<Metrics>,
}

impl Outbox {
    pub fn open(
        _state_dir: &Path,
        channels: &BTreeMap<String, ChannelConfig>,
        _max_pending: u64,
        metrics: Arc<Metrics>,
    ) -> Result<Outbox, OutboxError> {
        let mut files = BTreeMap::new();
        for (name, c) in channels {
            if let ChannelConfig::File { path } = c {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?;
                files.insert(name.clone(), f);
            }
        }
        Ok(Outbox {
            channels: channels.clone(),
            files: Mutex::new(files),
            metrics,
        })
    }

    /// Records the alert for each named channel.
    pub fn submit(&self, alert: &Alert, channels: &[String]) -> Result<(), OutboxError> {
        let line = alert.to_json() + "\n";
        for name in channels {
            let ok = match self.channels.get(name) {
                Some(ChannelConfig::File { .. }) => {
                    let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
                    match files.get_mut(name) {
                        Some(f) => f.write_all(line.as_bytes()).is_ok(),
                        None => false,
                    }
                }
                Some(ChannelConfig::Stdout {}) => {
                    std::io::stdout().write_all(line.as_bytes()).is_ok()
                }
                _ => false,
            };
            self.metrics
                .deliveries
                .get_or_create(&DeliveryLabels {
                    channel: name.clone(),
                    outcome: if ok { "delivered" } else { "failed" }.to_string(),
                })
                .inc();
        }
        Ok(())
    }

    /// Starts delivery tasks (none in this provisional version).
    pub fn start(&self, _shutdown: CancellationToken) -> Vec<JoinHandle<()>> {
        Vec::new()
    }
}
