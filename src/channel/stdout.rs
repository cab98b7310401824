//! The stdout channel: each alert's JSON as one line on standard output,
//! for pipelines and debugging. A closed or failing stdout is retried.
//!
//! The write happens on a blocking thread (a full pipe must not stall a
//! runtime worker), under stdout's lock, so a line is never interleaved
//! with other output of the process.

use std::io::Write;

use super::{AlertRecord, DeliveryError};

#[derive(Debug, Default)]
pub struct StdoutChannel {}

impl StdoutChannel {
    pub fn build() -> StdoutChannel {
        StdoutChannel {}
    }

    pub async fn deliver(&self, alert: &AlertRecord) -> Result<(), DeliveryError> {
        let mut line = String::with_capacity(alert.json.len() + 1);
        line.push_str(&alert.json);
        line.push('\n');
        let written = tokio::task::spawn_blocking(move || {
            let mut out = std::io::stdout().lock();
            out.write_all(line.as_bytes())?;
            out.flush()
        })
        .await;
        match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(DeliveryError::retry(format!("cannot write to stdout: {e}"))),
            Err(e) => Err(DeliveryError::retry(format!("stdout writer failed: {e}"))),
        }
    }
}
