//! The NDJSON file channel: each alert's JSON appended as one line.
//!
//! The file is opened (and its directory created) when the channel is
//! built, so an unwritable path stops the daemon at start. Before each
//! write the path is checked: when it was moved away or replaced (log
//! rotation), the new file is opened. A failed write drops the handle and
//! is retried; the line is then written again in full.

use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

use super::{AlertRecord, ChannelError, DeliveryError};

#[derive(Debug)]
pub struct FileChannel {
    path: PathBuf,
    /// The open file and its inode; only the channel's one delivery task
    /// writes, the lock just makes `deliver(&self)` possible.
    file: Mutex<Option<(tokio::fs::File, u64)>>,
}

impl FileChannel {
    pub fn build(name: &str, path: &Path) -> Result<FileChannel, ChannelError> {
        let open_err = |source| ChannelError::Open {
            channel: name.to_string(),
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(open_err)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(open_err)?;
        let ino = inode(&file.metadata().map_err(open_err)?);
        Ok(FileChannel {
            path: path.to_path_buf(),
            file: Mutex::new(Some((tokio::fs::File::from_std(file), ino))),
        })
    }

    pub async fn deliver(&self, alert: &AlertRecord) -> Result<(), DeliveryError> {
        let mut guard = self.file.lock().await;
        let current = tokio::fs::metadata(&self.path)
            .await
            .ok()
            .map(|m| inode(&m));
        let stale = match (&*guard, current) {
            (Some((_, ino)), Some(now)) => *ino != now,
            _ => true,
        };
        if stale {
            *guard = None;
            let file = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .await
                .map_err(|e| self.failed("open", e))?;
            let ino = inode(&file.metadata().await.map_err(|e| self.failed("open", e))?);
            *guard = Some((file, ino));
        }
        let Some((file, _)) = guard.as_mut() else {
            return Err(DeliveryError::retry("file not open"));
        };
        let mut line = String::with_capacity(alert.json.len() + 1);
        line.push_str(&alert.json);
        line.push('\n');
        let written = async {
            file.write_all(line.as_bytes()).await?;
            file.flush().await
        }
        .await;
        if let Err(e) = written {
            *guard = None;
            return Err(self.failed("write", e));
        }
        Ok(())
    }

    fn failed(&self, what: &str, e: std::io::Error) -> DeliveryError {
        DeliveryError::retry(format!("cannot {what} `{}`: {e}", self.path.display()))
    }
}

#[cfg(unix)]
fn inode(m: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(m)
}

#[cfg(not(unix))]
fn inode(_: &std::fs::Metadata) -> u64 {
    0
}
