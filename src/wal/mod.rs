//! The write-ahead log of accepted input (daemon.md section 4): every batch
//! of events and every idle watermark advance is appended here before the
//! engine sees it and before it is acknowledged, so that recovery replays
//! exactly what the engine saw.
//!
//! Layout: `state_dir/wal/<first-lsn>.log` segments of framed records
//! `[len u32][crc32 u32][lsn u64][payload]` (little endian; the CRC covers
//! the lsn and the payload). A torn or corrupt tail — a crash mid-write — is
//! detected by length and checksum and cut off at recovery. Segments wholly
//! behind a checkpoint are deleted.
//!
//! Appends are buffered in the process and reach the file in one write per
//! group of records ([`Wal::flush`], called by `sync`): the log writer
//! appends a whole group, then syncs once (group commit).
//!
//! Invariant: LSNs are consecutive; a record is durable once `sync` returned
//! (with `fsync: batch`).

mod record;

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use record::{Encoded, Idempotent, Record, encode_batch};

/// Segments are rolled over past this size.
const SEGMENT_BYTES: u64 = 64 << 20;
/// Largest record accepted when reading (a longer length field is corruption).
const MAX_RECORD: u32 = 1 << 30;
/// Capacity of the append buffer kept between groups (a larger one, grown
/// by a huge group, is given back).
const BUF_KEEP: usize = 8 << 20;

/// Records to replay, with their LSNs, in order.
pub type Replay = Vec<(u64, Record)>;

/// With `fsync: interval`, the longest an appended record waits for its
/// sync: the log writer syncs when a write finds the last sync older than
/// this, and on the daemon's ticks of this period when traffic stops.
pub const SYNC_INTERVAL: Duration = Duration::from_millis(100);

/// When appended records are made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Before every acknowledgement.
    Batch,
    /// At most every 100ms.
    Interval,
    Off,
}

impl FsyncPolicy {
    pub fn parse(s: Option<&str>) -> Result<Self, String> {
        match s {
            None | Some("batch") => Ok(FsyncPolicy::Batch),
            Some("interval") => Ok(FsyncPolicy::Interval),
            Some("off") => Ok(FsyncPolicy::Off),
            Some(other) => Err(format!(
                "durability.fsync: unknown policy `{other}` (batch, interval or off)"
            )),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("write-ahead log {path}: {source}")]
    Io { path: String, source: io::Error },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> WalError + '_ {
    move |source| WalError::Io {
        path: path.display().to_string(),
        source,
    }
}

pub struct Wal {
    dir: PathBuf,
    /// The current segment; shared with whoever syncs it off this thread
    /// ([`Wal::segment`]).
    file: Arc<File>,
    path: PathBuf,
    seg_bytes: u64,
    next_lsn: u64,
    policy: FsyncPolicy,
    /// Appended records not yet written to the file (or `sync`ed).
    dirty: bool,
    last_sync: Instant,
    /// Framed records appended since the last [`Wal::flush`]; reused, so a
    /// group costs one write and no allocation once it has grown.
    buf: Vec<u8>,
    /// `(next_lsn, seg_bytes)` as of the last successful write, to take a
    /// failed group back.
    flushed: (u64, u64),
}

fn segment_name(lsn: u64) -> String {
    format!("{lsn:020}.log")
}

/// Segments sorted by their first LSN.
fn segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut v = Vec::new();
    for e in fs::read_dir(dir)? {
        let p = e?.path();
        let lsn = p
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".log"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(lsn) = lsn {
            v.push((lsn, p));
        }
    }
    v.sort();
    Ok(v)
}

/// Reads the valid records of one segment; returns them and the byte length
/// of the valid prefix.
/// Also says whether a torn or corrupt record ended it.
fn read_segment(path: &Path) -> io::Result<(Replay, u64, bool)> {
    let mut r = BufReader::new(File::open(path)?);
    let mut out = Vec::new();
    let mut good: u64 = 0;
    let mut torn = false;
    loop {
        let mut head = [0u8; 8];
        match read_exact_or_eof(&mut r, &mut head)? {
            0 => break,
            8 => {}
            _ => {
                torn = true;
                break;
            }
        }
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if !(8..=MAX_RECORD).contains(&len) {
            torn = true;
            break;
        }
        let mut body = vec![0u8; len as usize];
        if read_exact_or_eof(&mut r, &mut body)? != body.len() {
            torn = true;
            break;
        }
        if crc32fast::hash(&body) != crc {
            torn = true;
            break;
        }
        let lsn = u64::from_le_bytes(body[..8].try_into().unwrap_or([0; 8]));
        match Record::decode(&body[8..]) {
            Some(rec) => out.push((lsn, rec)),
            None => {
                torn = true;
                break;
            }
        }
        good += 8 + u64::from(len);
    }
    Ok((out, good, torn))
}

/// Opens a segment for appending (creating it).
fn open_segment(path: &Path) -> Result<Arc<File>, WalError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map(Arc::new)
        .map_err(io_err(path))
}

fn read_exact_or_eof(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

impl Wal {
    /// Opens the log, cutting a torn tail, and returns the records with
    /// `lsn >= from` for replay.
    pub fn open(
        state_dir: &Path,
        policy: FsyncPolicy,
        from: u64,
    ) -> Result<(Wal, Replay), WalError> {
        let dir = state_dir.join("wal");
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let segs = segments(&dir).map_err(io_err(&dir))?;
        let mut replay = Vec::new();
        let mut next_lsn = from.max(1);
        let mut last: Option<(PathBuf, u64)> = None;
        for (i, (first, path)) in segs.iter().enumerate() {
            let (records, good, torn) = read_segment(path).map_err(io_err(path))?;
            if torn {
                tracing::warn!(
                    segment = %path.display(),
                    valid_bytes = good,
                    "Write-ahead log has a torn or corrupt tail (crash mid-write); cutting it off"
                );
                let f = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(io_err(path))?;
                f.set_len(good).map_err(io_err(path))?;
                f.sync_all().map_err(io_err(path))?;
                // Nothing after a cut can be trusted to follow on.
                for (_, later) in &segs[i + 1..] {
                    tracing::warn!(segment = %later.display(), "Removing log segment after a corrupt one");
                    let _ = fs::remove_file(later);
                }
            }
            if let Some((l, _)) = records.last() {
                next_lsn = next_lsn.max(l + 1);
            } else {
                next_lsn = next_lsn.max(*first);
            }
            replay.extend(records.into_iter().filter(|(l, _)| *l >= from));
            last = Some((path.clone(), good));
            if torn {
                break;
            }
        }
        let (path, size) = match last {
            Some(l) => l,
            None => (dir.join(segment_name(next_lsn)), 0),
        };
        let file = open_segment(&path)?;
        sync_dir(&dir);
        Ok((
            Wal {
                dir,
                file,
                path,
                seg_bytes: size,
                next_lsn,
                policy,
                dirty: false,
                last_sync: Instant::now(),
                buf: Vec::with_capacity(64 * 1024),
                flushed: (next_lsn, size),
            },
            replay,
        ))
    }

    /// The LSN the next record will get.
    pub fn next_lsn(&self) -> u64 {
        self.next_lsn
    }

    /// When appended records are made durable.
    pub fn policy(&self) -> FsyncPolicy {
        self.policy
    }

    /// Whether records were appended since the last sync.
    pub fn unsynced(&self) -> bool {
        self.dirty
    }

    /// The segment being written, with its path, so that another thread can
    /// sync what [`Wal::flush`] wrote to it. Records of earlier segments
    /// were synced when the segment was rolled over.
    pub fn segment(&self) -> (Arc<File>, &Path) {
        (self.file.clone(), &self.path)
    }

    /// Appends a record (buffered in the OS until `sync`).
    pub fn append(&mut self, rec: &Record) -> Result<u64, WalError> {
        self.append_with(|b| rec.encode(b))
    }

    /// Appends a record whose payload `encode` writes.
    pub fn append_with(&mut self, encode: impl FnOnce(&mut Vec<u8>)) -> Result<u64, WalError> {
        if self.seg_bytes >= SEGMENT_BYTES {
            self.roll()?;
        }
        let lsn = self.next_lsn;
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0u8; 8]);
        self.buf.extend_from_slice(&lsn.to_le_bytes());
        encode(&mut self.buf);
        let len = u32::try_from(self.buf.len() - start - 8).unwrap_or(u32::MAX);
        let crc = crc32fast::hash(&self.buf[start + 8..]);
        self.buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
        self.buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
        self.appended(start);
        Ok(lsn)
    }

    /// Appends a record encoded elsewhere ([`Encoded`]): only the frame
    /// header is computed here; the payload's checksum is combined, not
    /// recomputed.
    pub fn append_encoded(&mut self, rec: &Encoded) -> Result<u64, WalError> {
        if self.seg_bytes >= SEGMENT_BYTES {
            self.roll()?;
        }
        let lsn = self.next_lsn;
        let start = self.buf.len();
        let len = u32::try_from(8 + rec.payload().len()).unwrap_or(u32::MAX);
        let mut crc = crc32fast::Hasher::new();
        crc.update(&lsn.to_le_bytes());
        crc.combine(&rec.crc());
        self.buf.extend_from_slice(&len.to_le_bytes());
        self.buf.extend_from_slice(&crc.finalize().to_le_bytes());
        self.buf.extend_from_slice(&lsn.to_le_bytes());
        self.buf.extend_from_slice(rec.payload());
        self.appended(start);
        Ok(lsn)
    }

    /// Book-keeping after a record was framed into `buf` from `start`.
    fn appended(&mut self, start: usize) {
        self.seg_bytes += (self.buf.len() - start) as u64;
        self.next_lsn += 1;
        self.dirty = true;
    }

    /// Writes the buffered records to the file (one write for the group).
    /// Acknowledging needs `sync`, which calls this first.
    /// On a failed write the group is taken back whole: the file is cut to
    /// its length before the write and the LSNs are reused, so a partial
    /// record never sits in front of later, acknowledged ones.
    pub fn flush(&mut self) -> Result<(), WalError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let r = (&*self.file).write_all(&self.buf);
        self.buf.clear();
        if self.buf.capacity() > BUF_KEEP {
            self.buf.shrink_to(BUF_KEEP);
        }
        match r {
            Ok(()) => {
                self.flushed = (self.next_lsn, self.seg_bytes);
                Ok(())
            }
            Err(e) => {
                let (lsn, bytes) = self.flushed;
                if let Err(cut) = self.file.set_len(bytes) {
                    tracing::error!(error = %cut, "Cannot cut a failed write off the write-ahead log");
                }
                self.next_lsn = lsn;
                self.seg_bytes = bytes;
                Err(io_err(&self.path)(e))
            }
        }
    }

    /// Makes appended records durable as the policy says; call before
    /// acknowledging them.
    pub fn sync(&mut self) -> Result<(), WalError> {
        let due = match self.policy {
            FsyncPolicy::Batch => true,
            FsyncPolicy::Interval => self.last_sync.elapsed() >= SYNC_INTERVAL,
            FsyncPolicy::Off => false,
        };
        self.flush()?;
        if self.dirty && due {
            self.file.sync_data().map_err(io_err(&self.path))?;
            self.dirty = false;
            self.last_sync = Instant::now();
        }
        Ok(())
    }

    /// Forces appended records to disk whatever the policy (shutdown, checkpoint).
    pub fn sync_now(&mut self) -> Result<(), WalError> {
        self.flush()?;
        if self.dirty {
            self.file.sync_data().map_err(io_err(&self.path))?;
            self.dirty = false;
            self.last_sync = Instant::now();
        }
        Ok(())
    }

    fn roll(&mut self) -> Result<(), WalError> {
        self.sync_now()?;
        let path = self.dir.join(segment_name(self.next_lsn));
        self.file = open_segment(&path)?;
        self.path = path;
        self.seg_bytes = 0;
        self.flushed = (self.next_lsn, 0);
        sync_dir(&self.dir);
        Ok(())
    }

    /// Deletes segments whose records all precede `lsn` (covered by a checkpoint).
    pub fn truncate_before(&mut self, lsn: u64) {
        let Ok(segs) = segments(&self.dir) else {
            return;
        };
        for (i, (_, path)) in segs.iter().enumerate() {
            let next_start = segs.get(i + 1).map(|s| s.0);
            if next_start.is_some_and(|n| n <= lsn)
                && *path != self.path
                && let Err(e) = fs::remove_file(path)
            {
                tracing::warn!(segment = %path.display(), error = %e, "Cannot remove an old log segment");
            }
        }
        if self.seg_bytes >= SEGMENT_BYTES / 4 && self.next_lsn == lsn {
            // Everything is covered: start a fresh segment so the old one can go.
            if self.roll().is_ok() {
                self.truncate_before(lsn);
            }
        }
    }

    /// Total bytes of all segments (for tests and metrics).
    pub fn disk_bytes(&self) -> u64 {
        segments(&self.dir)
            .map(|s| {
                s.iter()
                    .filter_map(|(_, p)| fs::metadata(p).ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    }

    #[cfg(test)]
    fn len(&mut self) -> u64 {
        fs::metadata(&self.path).map_or(0, |m| m.len())
    }
}

impl Drop for Wal {
    /// Buffered records reach the OS (not the disk) when the log is dropped.
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// fsync of a directory, so a created or renamed file survives a crash.
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(n: usize) -> Record {
        Record::Batch {
            source: "http".into(),
            events: (0..n)
                .map(|i| (i as i64, format!("{{\"type\":\"a\",\"ts\":{i}}}")))
                .collect(),
            offset: None,
            idempotent: None,
        }
    }

    #[test]
    fn records_survive_reopen_and_replay_from_an_lsn() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, replay) = Wal::open(dir.path(), FsyncPolicy::Batch, 0).unwrap();
        assert!(replay.is_empty());
        assert_eq!(w.append(&batch(2)).unwrap(), 1);
        assert_eq!(w.append(&Record::Watermark(77)).unwrap(), 2);
        assert_eq!(w.append(&batch(1)).unwrap(), 3);
        w.sync().unwrap();
        drop(w);
        let (w, replay) = Wal::open(dir.path(), FsyncPolicy::Batch, 2).unwrap();
        assert_eq!(w.next_lsn(), 4);
        assert_eq!(replay.len(), 2);
        assert_eq!(replay[0], (2, Record::Watermark(77)));
        assert_eq!(replay[1], (3, batch(1)));
    }

    #[test]
    fn a_record_encoded_elsewhere_is_framed_like_an_appended_one() {
        let rec = batch(3);
        let Record::Batch { source, events, .. } = &rec else {
            unreachable!("batch() makes a batch")
        };
        let encoded = Encoded::batch(
            source,
            events.iter().map(|(t, r)| (*t, r.as_str())),
            None,
            None,
        );
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let (mut wa, _) = Wal::open(a.path(), FsyncPolicy::Batch, 0).unwrap();
        let (mut wb, _) = Wal::open(b.path(), FsyncPolicy::Batch, 0).unwrap();
        for _ in 0..2 {
            wa.append(&rec).unwrap();
            wb.append_encoded(&encoded).unwrap();
        }
        wa.sync().unwrap();
        wb.sync().unwrap();
        assert_eq!(fs::read(&wa.path).unwrap(), fs::read(&wb.path).unwrap());
        drop(wb);
        let (_, replay) = Wal::open(b.path(), FsyncPolicy::Batch, 0).unwrap();
        assert_eq!(replay, vec![(1, rec.clone()), (2, rec)]);
    }

    #[test]
    fn appends_reach_the_file_only_when_flushed() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, _) = Wal::open(dir.path(), FsyncPolicy::Off, 0).unwrap();
        w.append(&batch(1)).unwrap();
        w.append(&batch(2)).unwrap();
        assert_eq!(w.len(), 0);
        w.sync().unwrap(); // `off`: written, not fsynced
        let written = w.len();
        assert!(written > 0);
        w.append(&Record::Watermark(1)).unwrap();
        drop(w); // dropping writes what is buffered
        let (_, replay) = Wal::open(dir.path(), FsyncPolicy::Off, 0).unwrap();
        assert_eq!(replay.len(), 3);
    }

    #[test]
    fn a_torn_tail_is_cut_and_appending_continues() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, _) = Wal::open(dir.path(), FsyncPolicy::Batch, 0).unwrap();
        w.append(&batch(3)).unwrap();
        w.append(&batch(4)).unwrap();
        w.sync().unwrap();
        let full = w.len();
        let path = w.path.clone();
        drop(w);
        // A crash in the middle of the second record.
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(full - 5).unwrap();
        let (mut w, replay) = Wal::open(dir.path(), FsyncPolicy::Batch, 0).unwrap();
        assert_eq!(replay.len(), 1);
        assert_eq!(w.next_lsn(), 2);
        w.append(&Record::Watermark(5)).unwrap();
        drop(w);
        let (_, replay) = Wal::open(dir.path(), FsyncPolicy::Batch, 0).unwrap();
        assert_eq!(replay.len(), 2);
        assert_eq!(replay[1], (2, Record::Watermark(5)));
    }

    #[test]
    fn a_flipped_byte_is_detected_by_the_checksum() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, _) = Wal::open(dir.path(), FsyncPolicy::Batch, 0).unwrap();
        w.append(&batch(1)).unwrap();
        w.append(&batch(1)).unwrap();
        let path = w.path.clone();
        drop(w);
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 3;
        bytes[last] ^= 0xff;
        fs::write(&path, bytes).unwrap();
        let (_, replay) = Wal::open(dir.path(), FsyncPolicy::Batch, 0).unwrap();
        assert_eq!(replay.len(), 1);
    }

    #[test]
    fn segments_behind_a_checkpoint_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, _) = Wal::open(dir.path(), FsyncPolicy::Off, 0).unwrap();
        w.append(&batch(1)).unwrap();
        w.roll().unwrap();
        w.append(&batch(1)).unwrap();
        w.roll().unwrap();
        w.append(&batch(1)).unwrap();
        assert_eq!(segments(&w.dir).unwrap().len(), 3);
        w.truncate_before(3);
        assert_eq!(segments(&w.dir).unwrap().len(), 1);
        drop(w);
        let (_, replay) = Wal::open(dir.path(), FsyncPolicy::Off, 3).unwrap();
        assert_eq!(replay.len(), 1);
    }
}
