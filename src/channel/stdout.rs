//! The stdout channel: each alert's JSON as one line on standard output,
//! for pipelines and debugging. A closed or failing stdout is retried.

use tokio::io::AsyncWriteExt;

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
        let mut out = tokio::io::stdout();
        let written = async {
            out.write_all(line.as_bytes()).await?;
            out.flush().await
        }
        .await;
        written.map_err(|e| DeliveryError::retry(format!("cannot write to stdout: {e}")))
    }
}
