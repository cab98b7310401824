//! Checkpoints: the whole engine state plus what it covers (the next log
//! record to replay, file-source offsets, idempotency answers), written
//! atomically (temp file, fsync, rename, fsync dir) and checked on read.
//!
//! File: `state_dir/checkpoints/checkpoint-<lsn>.json`, a header line
//! `tocsin-checkpoint <version> crc32=<hex of the body's CRC-32>` then the
//! JSON body. (Formats 1 and 2 had `sha256=<hex>`: the checksum only has to
//! catch a torn or damaged file, and CRC-32 does that at memory speed where
//! SHA-256 took ~0.8 s per 400 MB checkpoint.)
//! The two newest are kept; a corrupt newest falls back to the previous one.
//! A checkpoint of a newer format is refused with a clear message.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::pipeline::PipelineSnapshot;
use crate::source::FileOffset;
use crate::wal::{Idempotent, sync_dir};

/// The format this binary writes. It reads it and the earlier ones:
/// format 1 kept tumbling, hopping and session windows as rows of values
/// (format 2 keeps them folded, `engine::aggregate::Columns`); format 2
/// held event texts as JSON strings and had a SHA-256 (format 3 writes an
/// event's JSON in place, `engine::snapshot::StoredEvent`, and a CRC-32).
pub const VERSION: u32 = 3;
const MAGIC: &str = "tocsin-checkpoint";
const KEEP: usize = 2;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileOffsetSnap {
    pub path: String,
    pub dev: u64,
    pub ino: u64,
    pub offset: u64,
}

impl From<&FileOffset> for FileOffsetSnap {
    fn from(o: &FileOffset) -> Self {
        FileOffsetSnap {
            path: o.path.clone(),
            dev: o.identity.0,
            ino: o.identity.1,
            offset: o.offset,
        }
    }
}

impl From<&FileOffsetSnap> for FileOffset {
    fn from(o: &FileOffsetSnap) -> Self {
        FileOffset {
            path: o.path.clone(),
            identity: (o.dev, o.ino),
            offset: o.offset,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdempotentSnap {
    pub key: String,
    pub status: u16,
    pub body: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The first log record not covered: replay starts here.
    pub lsn: u64,
    /// Wall-clock time of writing (ms), for the checkpoint-age display.
    pub written_at: i64,
    pub pipeline: PipelineSnapshot,
    /// The rule files running at `lsn`, `(name, text)`: recovery evaluates
    /// the log after it with these, not with what is on disk now. Absent
    /// in checkpoints of stop 18 and before.
    #[serde(default)]
    pub rules: Option<Vec<(String, String)>>,
    pub file_offsets: Vec<FileOffsetSnap>,
    /// Oldest first.
    pub idempotency: Vec<IdempotentSnap>,
}

impl From<&Idempotent> for IdempotentSnap {
    fn from(i: &Idempotent) -> Self {
        IdempotentSnap {
            key: i.key.clone(),
            status: i.status,
            body: i.body.clone(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "checkpoint {path} has format version {found}, newer than this binary's {VERSION}: \
         upgrade tocsin, or move {path} away to start from the write-ahead log only"
    )]
    TooNew { path: String, found: u32 },
}

fn dir_of(state_dir: &Path) -> PathBuf {
    state_dir.join("checkpoints")
}

fn list(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut v: Vec<(u64, PathBuf)> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| {
            let p = e.path();
            let lsn = p
                .file_name()?
                .to_str()?
                .strip_prefix("checkpoint-")?
                .strip_suffix(".json")?
                .parse()
                .ok()?;
            Some((lsn, p))
        })
        .collect();
    v.sort();
    v
}

/// Writes a checkpoint atomically and removes all but the newest two.
pub fn write(state_dir: &Path, cp: &Checkpoint) -> Result<PathBuf, CheckpointError> {
    let dir = dir_of(state_dir);
    let err = |path: &Path| {
        let path = path.display().to_string();
        move |source| CheckpointError::Io { path, source }
    };
    fs::create_dir_all(&dir).map_err(err(&dir))?;
    let body = serde_json::to_vec(cp).map_err(|e| CheckpointError::Io {
        path: dir.display().to_string(),
        source: std::io::Error::other(e),
    })?;
    let sum = crc32fast::hash(&body);
    let path = dir.join(format!("checkpoint-{:020}.json", cp.lsn));
    let tmp = dir.join(format!(".checkpoint-{:020}.tmp", cp.lsn));
    {
        let mut f = fs::File::create(&tmp).map_err(err(&tmp))?;
        f.write_all(format!("{MAGIC} {VERSION} crc32={sum:08x}\n").as_bytes())
            .and_then(|()| f.write_all(&body))
            .and_then(|()| f.sync_all())
            .map_err(err(&tmp))?;
    }
    fs::rename(&tmp, &path).map_err(err(&path))?;
    sync_dir(&dir);
    let all = list(&dir);
    if all.len() > KEEP {
        for (_, old) in &all[..all.len() - KEEP] {
            let _ = fs::remove_file(old);
        }
    }
    Ok(path)
}

/// Reads one checkpoint file; `Ok(None)` when it is corrupt.
fn read_one(path: &Path) -> Result<Option<Checkpoint>, CheckpointError> {
    let bytes = fs::read(path).map_err(|source| CheckpointError::Io {
        path: path.display().to_string(),
        source,
    })?;
    parse(path, &bytes)
}

/// Parses a checkpoint file's bytes; `Ok(None)` when it is corrupt.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Option<Checkpoint>, CheckpointError> {
    let Some(nl) = bytes.iter().position(|&b| b == b'\n') else {
        return Ok(None);
    };
    let header = String::from_utf8_lossy(&bytes[..nl]);
    let body = &bytes[nl + 1..];
    let mut parts = header.split(' ');
    if parts.next() != Some(MAGIC) {
        return Ok(None);
    }
    let Some(version) = parts.next().and_then(|v| v.parse::<u32>().ok()) else {
        return Ok(None);
    };
    if version > VERSION {
        return Err(CheckpointError::TooNew {
            path: path.display().to_string(),
            found: version,
        });
    }
    let sum = parts.next().unwrap_or_default();
    let intact = if version >= 3 {
        sum.strip_prefix("crc32=") == Some(format!("{:08x}", crc32fast::hash(body)).as_str())
    } else {
        let digest = Sha256::digest(body);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        sum.strip_prefix("sha256=") == Some(hex.as_str())
    };
    if !intact {
        return Ok(None);
    }
    Ok(serde_json::from_slice(body).ok())
}

/// The newest readable checkpoint, falling back to older ones when the
/// newest is corrupt. `Ok(None)`: start from the log only.
pub fn read_latest(state_dir: &Path) -> Result<Option<Checkpoint>, CheckpointError> {
    for (_, path) in list(&dir_of(state_dir)).iter().rev() {
        match read_one(path)? {
            Some(cp) => {
                tracing::info!(path = %path.display(), lsn = cp.lsn, "Restoring checkpoint");
                return Ok(Some(cp));
            }
            None => {
                tracing::warn!(path = %path.display(), "Checkpoint is corrupt; trying the previous one");
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lang::{Options, load_texts};
    use crate::pipeline::Pipeline;

    fn cp(lsn: u64) -> Checkpoint {
        let l = load_texts(
            vec![("t.rules".into(), "rule r { from a }".into())],
            &Options::default(),
        );
        Checkpoint {
            lsn,
            written_at: 0,
            pipeline: Pipeline::new(&l.program, 0).snapshot(),
            rules: Some(l.program.texts.to_vec()),
            file_offsets: Vec::new(),
            idempotency: Vec::new(),
        }
    }

    #[test]
    fn newest_is_read_and_a_corrupt_one_falls_back() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &cp(5)).unwrap();
        let newest = write(dir.path(), &cp(9)).unwrap();
        assert_eq!(read_latest(dir.path()).unwrap().unwrap().lsn, 9);
        let mut bytes = fs::read(&newest).unwrap();
        let n = bytes.len();
        bytes[n - 2] ^= 1;
        fs::write(&newest, bytes).unwrap();
        assert_eq!(read_latest(dir.path()).unwrap().unwrap().lsn, 5);
    }

    #[test]
    fn only_two_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        for l in [1, 2, 3] {
            write(dir.path(), &cp(l)).unwrap();
        }
        assert_eq!(list(&dir_of(dir.path())).len(), 2);
    }

    #[test]
    fn a_newer_format_is_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), &cp(3)).unwrap();
        let text =
            fs::read_to_string(&p)
                .unwrap()
                .replacen(&format!(" {VERSION} crc32"), " 99 crc32", 1);
        fs::write(&p, text).unwrap();
        let e = read_latest(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("version 99") && e.contains("upgrade tocsin"),
            "{e}"
        );
    }

    /// A checkpoint of format 2 (SHA-256, event texts as JSON strings)
    /// still restores the same state; format 3 writes the texts in place,
    /// in the sequencer and inside a rule's state (read without serde's
    /// buffering of tagged enums, which cannot hold text in place).
    #[test]
    fn format_2_is_still_read() {
        let rules = "rule r { from a }\nrule s { key k sequence within 1h { x: a y: b } }";
        let l = load_texts(vec![("t.rules".into(), rules.into())], &Options::default());
        let mut p = Pipeline::new(&l.program, 0);
        let held_by_rule = r#"{"type":"a", "ts":1700000000000,"k":"u","msg":"say \"hi\""}"#;
        let held_by_sequencer = r#"{"type":"c","ts":1700000001000,"n":1.50}"#;
        let mut alerts = Vec::new();
        for text in [held_by_rule, held_by_sequencer] {
            p.push(crate::decode::test_event(text), &mut alerts)
                .unwrap();
        }
        let mut c = cp(7);
        c.pipeline = p.snapshot();
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), &c).unwrap();
        let file = fs::read_to_string(&path).unwrap();
        let (header, body) = file.split_once('\n').unwrap();
        assert!(header.starts_with("tocsin-checkpoint 3 crc32="), "{header}");
        let read = read_latest(dir.path()).unwrap().expect("format 3 is read");
        let mut q = Pipeline::new(&l.program, 0);
        assert_eq!(q.restore(&read.pipeline), ["r", "s"]);
        let same = |q: &Pipeline| {
            assert_eq!(
                serde_json::to_string(&q.snapshot()).unwrap(),
                serde_json::to_string(&p.snapshot()).unwrap()
            )
        };
        same(&q);

        let mut old_body = body.to_string();
        for text in [held_by_rule, held_by_sequencer] {
            let in_place = format!(r#""raw":{text}"#);
            assert!(old_body.contains(&in_place), "{body}");
            old_body = old_body.replace(
                &in_place,
                &format!(r#""raw":{}"#, serde_json::to_string(text).unwrap()),
            );
        }
        let hex: String = Sha256::digest(old_body.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        fs::remove_file(&path).unwrap();
        let old = dir_of(dir.path()).join("checkpoint-00000000000000000007.json");
        fs::write(
            &old,
            format!("tocsin-checkpoint 2 sha256={hex}\n{old_body}"),
        )
        .unwrap();
        let read = read_latest(dir.path()).unwrap().expect("format 2 is read");
        let mut q = Pipeline::new(&l.program, 0);
        assert_eq!(q.restore(&read.pipeline), ["r", "s"]);
        same(&q);
        // A damaged format-2 body is caught by its SHA-256.
        fs::write(
            &old,
            format!("tocsin-checkpoint 2 sha256={hex}\n{old_body} "),
        )
        .unwrap();
        assert!(read_latest(dir.path()).unwrap().is_none());
    }
}
