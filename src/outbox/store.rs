//! One channel's durable queue on disk: append-only segment files plus a
//! cursor ("everything before this sequence number is done").
//!
//! ```text
//! <dir>/00000000000000000000.seg   records, named by the first sequence number
//! <dir>/00000000000000004711.seg   the active (last) segment, appended to
//! <dir>/cursor                     u64 LE first undone seq + u64 LE check
//! ```
//!
//! A record is `magic u32 | len u32 | seq u64 | check u64 | payload`, all
//! little-endian, `check` the first 8 bytes of SHA-256 over seq, len and
//! payload. On open, each segment is read up to its first bad record: a torn
//! tail after a crash is cut off, never delivered half. Sequence numbers
//! only grow, across restarts too.
//!
//! Invariants: records at or after the cursor are pending, in order, and
//! listed in `pending`; a segment is deleted only when every record in it
//! is before the cursor (delivered, failed or dropped). The cursor and the
//! segments are written without fsync; [`Store::unsynced`] hands out the
//! files to sync, so the caller can fsync without holding the store's lock.
//! A stale cursor after a power loss means redelivery, never loss.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

const MAGIC: u32 = 0x314f_4374; // "tCO1"
const HEADER: usize = 24;
/// A segment past this size is closed and a new one started.
const SEGMENT_MAX: u64 = 8 << 20;
/// When nothing is pending, an active segment past this size is replaced
/// by an empty one, so a healthy channel keeps at most this much on disk.
const ROTATE_IDLE: u64 = 1 << 20;
/// Larger lengths in a header are corruption, not records.
const MAX_RECORD: u32 = 256 << 20;
const CURSOR: &str = "cursor";

/// Where a pending record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub seq: u64,
    /// The first seq of its segment (the segment's key).
    segment: u64,
    offset: u64,
    len: u32,
}

#[derive(Debug)]
struct Segment {
    file: File,
    len: u64,
    /// Appended to since the last [`Store::unsynced`].
    dirty: bool,
}

#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    /// By first seq; the last one is the active segment.
    segments: BTreeMap<u64, Segment>,
    /// Pending records in seq order; only their place, not their bytes.
    pending: VecDeque<Entry>,
    next_seq: u64,
    cursor_file: File,
    /// The value last written to `cursor_file`.
    cursor: u64,
    cursor_dirty: bool,
    /// A segment file was created since the last sync of the directory.
    dir_dirty: bool,
    /// An append failed part way: start a fresh segment before the next.
    rotate_next: bool,
}

/// What [`Store::open`] found besides the pending records.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Bytes cut from the end of the active segment (a torn tail).
    pub truncated: u64,
    /// Segments (not the last) that ended in a bad record.
    pub damaged: Vec<PathBuf>,
}

impl Store {
    pub fn open(dir: &Path) -> io::Result<(Store, Recovery)> {
        std::fs::create_dir_all(dir)?;
        let mut recovery = Recovery::default();
        let mut cursor_file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(CURSOR))?;
        let cursor = read_cursor(&mut cursor_file)?;

        let mut firsts: Vec<u64> = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let name = entry?.file_name();
            let Some(first) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".seg"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            firsts.push(first);
        }
        firsts.sort_unstable();

        let mut segments = BTreeMap::new();
        let mut pending = VecDeque::new();
        let mut next_seq = cursor.unwrap_or(0);
        let mut prev: Option<u64> = None;
        let last_first = firsts.last().copied();
        for first in firsts {
            let path = segment_path(dir, first);
            let file = OpenOptions::new().read(true).append(true).open(&path)?;
            let size = file.metadata()?.len();
            next_seq = next_seq.max(first);
            let good = scan(&file, first, |seq, offset, len| {
                if prev.is_some_and(|p| seq <= p) {
                    return false; // sequence numbers only grow: corruption
                }
                prev = Some(seq);
                next_seq = next_seq.max(seq + 1);
                if seq >= cursor.unwrap_or(0) {
                    pending.push_back(Entry {
                        seq,
                        segment: first,
                        offset,
                        len,
                    });
                }
                true
            })?;
            if good < size {
                if Some(first) == last_first {
                    file.set_len(good)?;
                    recovery.truncated = size - good;
                } else {
                    recovery.damaged.push(path);
                }
            }
            segments.insert(
                first,
                Segment {
                    file,
                    len: good,
                    dirty: false,
                },
            );
        }
        let mut store = Store {
            dir: dir.to_path_buf(),
            segments,
            pending,
            next_seq,
            cursor_file,
            // A missing or damaged cursor file is rewritten below.
            cursor: cursor.unwrap_or(u64::MAX),
            cursor_dirty: false,
            dir_dirty: false,
            rotate_next: false,
        };
        if store.segments.is_empty() {
            store.rotate()?;
        }
        store.write_cursor()?;
        store.compact()?;
        Ok((store, recovery))
    }

    /// Number of pending records.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// The oldest pending record.
    pub fn front(&self) -> Option<Entry> {
        self.pending.front().copied()
    }

    /// Appends a record; returns its seq.
    pub fn append(&mut self, payload: &[u8]) -> io::Result<u64> {
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|l| *l <= MAX_RECORD)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "record too large"))?;
        let needs_rotation = self.rotate_next
            || self
                .segments
                .last_key_value()
                .is_none_or(|(_, s)| s.len >= SEGMENT_MAX);
        if needs_rotation {
            self.rotate()?;
            self.rotate_next = false;
        }
        let seq = self.next_seq;
        let mut buf = Vec::with_capacity(HEADER + payload.len());
        buf.extend_from_slice(&MAGIC.to_le_bytes());
        buf.extend_from_slice(&len.to_le_bytes());
        buf.extend_from_slice(&seq.to_le_bytes());
        buf.extend_from_slice(&check(seq, len, payload).to_le_bytes());
        buf.extend_from_slice(payload);
        let (&first, seg) = self
            .segments
            .last_key_value()
            .ok_or_else(|| io::Error::other("outbox has no active segment"))?;
        let offset = seg.len;
        if let Err(e) = (&seg.file).write_all(&buf) {
            // Cut the partial record, and never append after it again.
            let _ = seg.file.set_len(offset);
            self.rotate_next = true;
            return Err(e);
        }
        if let Some(seg) = self.segments.get_mut(&first) {
            seg.len += buf.len() as u64;
            seg.dirty = true;
        }
        self.next_seq += 1;
        self.pending.push_back(Entry {
            seq,
            segment: first,
            offset,
            len,
        });
        Ok(seq)
    }

    /// The payload of a pending record, checked.
    pub fn read(&self, e: &Entry) -> io::Result<Vec<u8>> {
        let seg = self
            .segments
            .get(&e.segment)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "segment removed"))?;
        let mut buf = vec![0u8; HEADER + e.len as usize];
        seg.file.read_exact_at(&mut buf, e.offset)?;
        match parse_header(&buf[..HEADER]) {
            Some((len, seq, sum)) if len == e.len && seq == e.seq => {
                let payload = buf.split_off(HEADER);
                if check(seq, len, &payload) == sum {
                    return Ok(payload);
                }
            }
            _ => {}
        }
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("record {} fails its checksum", e.seq),
        ))
    }

    /// Marks the record `seq` done when it is still the oldest pending one
    /// (`false`: it was dropped meanwhile).
    pub fn remove_front(&mut self, seq: u64) -> io::Result<bool> {
        if self.pending.front().is_none_or(|e| e.seq != seq) {
            return Ok(false);
        }
        self.pending.pop_front();
        self.write_cursor()?;
        self.compact()?;
        Ok(true)
    }

    /// Drops the oldest pending records until at most `keep` remain;
    /// returns how many were dropped.
    pub fn drop_oldest(&mut self, keep: usize) -> io::Result<u64> {
        let mut n = 0;
        while self.pending.len() > keep {
            self.pending.pop_front();
            n += 1;
        }
        if n > 0 {
            self.write_cursor()?;
            self.compact()?;
        }
        Ok(n)
    }

    /// Handles on everything written since the last call, for the caller to
    /// fsync after releasing the lock. Clears the dirty marks.
    pub fn unsynced(&mut self) -> io::Result<Vec<File>> {
        let mut out = Vec::new();
        for seg in self.segments.values_mut().filter(|s| s.dirty) {
            out.push(seg.file.try_clone()?);
            seg.dirty = false;
        }
        if self.cursor_dirty {
            out.push(self.cursor_file.try_clone()?);
            self.cursor_dirty = false;
        }
        if self.dir_dirty {
            out.push(File::open(&self.dir)?);
            self.dir_dirty = false;
        }
        Ok(out)
    }

    fn write_cursor(&mut self) -> io::Result<()> {
        let value = self.front().map_or(self.next_seq, |e| e.seq);
        if value == self.cursor {
            return Ok(());
        }
        let mut buf = [0u8; 16];
        buf[..8].copy_from_slice(&value.to_le_bytes());
        buf[8..].copy_from_slice(&cursor_check(value).to_le_bytes());
        self.cursor_file.write_all_at(&buf, 0)?;
        self.cursor = value;
        self.cursor_dirty = true;
        Ok(())
    }

    /// Starts a new active segment at `next_seq`.
    fn rotate(&mut self) -> io::Result<()> {
        let first = self.next_seq;
        if self.segments.contains_key(&first) {
            // The active segment holds nothing yet (or only a cut tail).
            return Ok(());
        }
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(segment_path(&self.dir, first))?;
        file.set_len(0)?;
        self.segments.insert(
            first,
            Segment {
                file,
                len: 0,
                dirty: false,
            },
        );
        self.dir_dirty = true;
        Ok(())
    }

    /// Deletes segments that hold nothing pending; replaces a large active
    /// segment when nothing is pending.
    fn compact(&mut self) -> io::Result<()> {
        if self.pending.is_empty()
            && self
                .segments
                .last_key_value()
                .is_some_and(|(_, s)| s.len >= ROTATE_IDLE)
        {
            self.rotate()?;
        }
        let firsts: Vec<u64> = self.segments.keys().copied().collect();
        for pair in firsts.windows(2) {
            // Every record of segment pair[0] is before pair[1]'s first seq.
            if pair[1] <= self.cursor {
                self.segments.remove(&pair[0]);
                match std::fs::remove_file(segment_path(&self.dir, pair[0])) {
                    Ok(()) => self.dir_dirty = true,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }
}

fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}.seg"))
}

fn check(seq: u64, len: u32, payload: &[u8]) -> u64 {
    let mut h = Sha256::new();
    h.update(seq.to_le_bytes());
    h.update(len.to_le_bytes());
    h.update(payload);
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_le_bytes(b)
}

fn cursor_check(value: u64) -> u64 {
    check(value, 0, b"cursor")
}

/// (len, seq, check) of a well-formed header.
fn parse_header(h: &[u8]) -> Option<(u32, u64, u64)> {
    let u32_at = |i: usize| h.get(i..i + 4)?.try_into().ok().map(u32::from_le_bytes);
    let u64_at = |i: usize| h.get(i..i + 8)?.try_into().ok().map(u64::from_le_bytes);
    if u32_at(0)? != MAGIC {
        return None;
    }
    let len = u32_at(4)?;
    if len > MAX_RECORD {
        return None;
    }
    Some((len, u64_at(8)?, u64_at(16)?))
}

/// The cursor; `None` (deliver everything still on disk) when the file is
/// empty or damaged.
fn read_cursor(f: &mut File) -> io::Result<Option<u64>> {
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    if buf.len() != 16 {
        return Ok(None);
    }
    let mut v = [0u8; 8];
    v.copy_from_slice(&buf[..8]);
    let value = u64::from_le_bytes(v);
    v.copy_from_slice(&buf[8..]);
    Ok((u64::from_le_bytes(v) == cursor_check(value)).then_some(value))
}

/// Reads records from the start of a segment, calling `found(seq, offset,
/// len)` for each good one until it returns `false`; returns the length of
/// the good prefix.
fn scan(file: &File, first: u64, mut found: impl FnMut(u64, u64, u32) -> bool) -> io::Result<u64> {
    let mut r = BufReader::new(file);
    let mut offset = 0u64;
    let mut header = [0u8; HEADER];
    let mut payload = Vec::new();
    loop {
        if !read_full(&mut r, &mut header)? {
            return Ok(offset);
        }
        let Some((len, seq, sum)) = parse_header(&header) else {
            return Ok(offset);
        };
        payload.resize(len as usize, 0);
        if !read_full(&mut r, &mut payload)? {
            return Ok(offset);
        }
        if seq < first || check(seq, len, &payload) != sum || !found(seq, offset, len) {
            return Ok(offset);
        }
        offset += (HEADER + len as usize) as u64;
    }
}

/// `read_exact` that reports a short read as `false`.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    match r.read_exact(buf) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payloads(store: &Store) -> Vec<Vec<u8>> {
        store
            .pending
            .iter()
            .map(|e| store.read(e).unwrap())
            .collect()
    }

    #[test]
    fn records_survive_reopen_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Store::open(dir.path()).unwrap();
        for p in [b"a".as_slice(), b"bb", b"ccc"] {
            s.append(p).unwrap();
        }
        let first = s.front().unwrap().seq;
        assert!(s.remove_front(first).unwrap());
        drop(s);
        let (s, rec) = Store::open(dir.path()).unwrap();
        assert_eq!(rec, Recovery::default());
        assert_eq!(payloads(&s), vec![b"bb".to_vec(), b"ccc".to_vec()]);
        assert_eq!(s.front().unwrap().seq, 1);
    }

    #[test]
    fn torn_tail_is_cut_and_appends_go_on() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Store::open(dir.path()).unwrap();
        s.append(b"one").unwrap();
        s.append(b"two").unwrap();
        drop(s);
        let seg = segment_path(dir.path(), 0);
        let len = std::fs::metadata(&seg).unwrap().len();
        // A crash in the middle of the second record.
        OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(len - 2)
            .unwrap();
        let (mut s, rec) = Store::open(dir.path()).unwrap();
        assert_eq!(rec.truncated, (HEADER + 3 - 2) as u64);
        assert_eq!(payloads(&s), vec![b"one".to_vec()]);
        s.append(b"three").unwrap();
        drop(s);
        let (s, rec) = Store::open(dir.path()).unwrap();
        assert_eq!(rec, Recovery::default());
        assert_eq!(payloads(&s), vec![b"one".to_vec(), b"three".to_vec()]);
    }

    #[test]
    fn corrupt_byte_stops_the_segment_there() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Store::open(dir.path()).unwrap();
        s.append(b"one").unwrap();
        s.append(b"two").unwrap();
        drop(s);
        let seg = segment_path(dir.path(), 0);
        let mut bytes = std::fs::read(&seg).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&seg, bytes).unwrap();
        let (s, rec) = Store::open(dir.path()).unwrap();
        assert_eq!(rec.truncated, (HEADER + 3) as u64);
        assert_eq!(payloads(&s), vec![b"one".to_vec()]);
    }

    #[test]
    fn delivered_segments_are_deleted_and_seqs_keep_growing() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Store::open(dir.path()).unwrap();
        let big = vec![7u8; (ROTATE_IDLE as usize) + 10];
        let seq = s.append(&big).unwrap();
        assert!(s.remove_front(seq).unwrap());
        // Nothing pending and the active segment was large: replaced.
        let segs: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".seg"))
            .collect();
        assert_eq!(segs, vec![format!("{:020}.seg", 1)]);
        drop(s);
        let (mut s, _) = Store::open(dir.path()).unwrap();
        assert!(s.front().is_none());
        assert_eq!(s.append(b"x").unwrap(), 1);
    }

    #[test]
    fn drop_oldest_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Store::open(dir.path()).unwrap();
        for p in [b"1", b"2", b"3", b"4"] {
            s.append(p).unwrap();
        }
        assert_eq!(s.drop_oldest(2).unwrap(), 2);
        assert!(!s.remove_front(0).unwrap());
        drop(s);
        let (s, _) = Store::open(dir.path()).unwrap();
        assert_eq!(payloads(&s), vec![b"3".to_vec(), b"4".to_vec()]);
    }
}
