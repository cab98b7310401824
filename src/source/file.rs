//! File source: tails every file matching a glob and hands its complete
//! lines, decoded, to the engine in batches.
//!
//! This module owns the set of followed files (found by the glob, kept
//! current by `notify` events plus a periodic rescan, since `notify` can miss
//! events), their read positions, and what happens on rotation and deletion
//! (the file that left the glob is read, by its open handle, until it has
//! stayed unchanged for [`ROTATE_WAIT_POLLS`] rescan intervals, then
//! dropped; the new file at the path is read from its start meanwhile) and
//! truncation (reading restarts at 0: noticed when the file is shorter than
//! the position, or when the last bytes read before the position changed).
//! It does not parse JSON (that is [`crate::decode`]) and it keeps no state
//! on disk: each batch carries its file's identity and offset, and whoever
//! logs the batch records them, by path.
//!
//! At start, the logged positions whose path matches the pattern say where
//! to resume. If there is none, the source runs for the first time and
//! `start_at` applies to the files present; otherwise every file without a
//! position is new and is read from its start. A logged file the glob no
//! longer finds (rotated while the daemon was down) is looked for by
//! identity in its directory and read from its logged offset first.
//!
//! Invariant: files are told apart by identity (device, inode), not by path,
//! so a renamed file is never read twice. A line is handed over only when
//! complete, at most once per identity (barring truncation), and a batch's
//! offset is the byte position right after its last line, so resuming there
//! neither skips nor repeats a line. The logged position of a path only
//! moves from a file to its successor once the old file is dropped (until
//! then the successor's batches carry no position). Reading never runs
//! ahead of the engine: the next read waits until the previous batch has
//! been taken.

use std::io::{self, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use notify::event::{EventKind, ModifyKind};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::fs::File;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::{Batch, EngineMsg, FileOffset, Ingest, now};
use crate::event::{Event, EventTime};

/// The `source` label of this source's events, rejects and batches.
const SOURCE: &str = "file";
/// Events per batch at most.
const BATCH: usize = 1024;
/// Bytes asked for per read.
const CHUNK: usize = 64 * 1024;
/// Pending `notify` wake-ups; when it fills up, the next pass rescans.
const WAKE_QUEUE: usize = 256;
/// Floor of the rescan interval (a zero interval would spin).
const MIN_POLL: Duration = Duration::from_millis(10);
/// Rescan intervals a rotated-away file must stay unchanged to be dropped.
const ROTATE_WAIT_POLLS: u32 = 2;
/// Bytes before the read position compared at each pass, to notice a file
/// truncated and written past the position again in between.
const TAIL: usize = 64;

/// Device and inode: what a file is, whatever its current name.
type Identity = (u64, u64);

/// Configuration of one file source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSourceConfig {
    /// Glob of the files to follow, e.g. `/var/log/app/*.ndjson`.
    pub pattern: String,
    /// Where reading starts in the files that exist when the source starts
    /// for the first time (no resume position matches the pattern). Files
    /// that appear later, or while the daemon was down after its first
    /// start, are always read from their beginning.
    pub start_at: StartAt,
    /// Interval of the fallback rescan, which catches what `notify` missed.
    pub poll_interval: Duration,
    /// Longest accepted line in bytes, without its line ending; a longer
    /// line is rejected as `too_large`, and at most this much of a line is
    /// ever buffered.
    pub max_line: usize,
}

impl FileSourceConfig {
    /// A configuration for `pattern` with the defaults: start at the end,
    /// rescan every second, lines up to 1 MiB.
    pub fn new(pattern: impl Into<String>) -> Self {
        FileSourceConfig {
            pattern: pattern.into(),
            start_at: StartAt::default(),
            poll_interval: Duration::from_secs(1),
            max_line: 1 << 20,
        }
    }
}

/// Where reading starts in a file that exists when the source starts
/// (`start_at: beginning` or `end` in the config; anything else is a
/// config error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartAt {
    /// Read the whole file.
    Beginning,
    /// Read only what is appended from now on (a partial last line is
    /// skipped up to its newline).
    #[default]
    End,
}

/// Tails the files matching `cfg.pattern` until `shutdown` is cancelled or
/// the engine stops taking batches.
///
/// Resume positions, e.g. restored from a checkpoint (those whose path the
/// pattern does not match belong to other sources and are ignored): for a
/// file with the same identity, reading resumes at the offset instead of
/// `start_at`, and any of them means the source has run before, so
/// `start_at` does not apply.
pub async fn run(
    cfg: FileSourceConfig,
    ingest: Ingest,
    resume: Vec<FileOffset>,
    shutdown: CancellationToken,
) {
    if let Err(e) = glob::Pattern::new(&cfg.pattern) {
        tracing::error!(
            pattern = %cfg.pattern,
            error = %e,
            "Invalid file source pattern; the file source does not start"
        );
        return;
    }
    let (wake_tx, mut wake_rx) = mpsc::channel(WAKE_QUEUE);
    let mut watch = Watch::new(&cfg.pattern, wake_tx);
    let mut tick = tokio::time::interval(cfg.poll_interval.max(MIN_POLL));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut tailer = Tailer::new(cfg, ingest, resume, shutdown.clone());
    let mut rescan = true;
    loop {
        if rescan {
            // Watch before scanning, so a file created in between is seen.
            watch.ensure();
            if tailer.scan().await.is_err() {
                break;
            }
        }
        if tailer.read_all().await.is_err() {
            break;
        }
        rescan = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            Some(wake) = wake_rx.recv() => drain_wakes(wake, &mut wake_rx),
            _ = tick.tick() => true,
        };
    }
    tracing::info!(pattern = %tailer.cfg.pattern, "File source stopped");
}

/// What a `notify` event asks of the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wake {
    /// Some file's content changed: read the followed files.
    Data,
    /// Files may have appeared, moved or gone: rescan the glob too.
    Layout,
}

/// Takes every queued wake-up; true when the glob must be rescanned.
fn drain_wakes(first: Wake, rx: &mut mpsc::Receiver<Wake>) -> bool {
    let mut rescan = first == Wake::Layout;
    let mut taken = 1;
    while let Ok(wake) = rx.try_recv() {
        taken += 1;
        rescan |= wake == Wake::Layout;
    }
    // A full queue may have dropped a `Layout` wake-up.
    rescan || taken >= WAKE_QUEUE
}

/// The `notify` watcher on the directories the pattern can match in.
struct Watch {
    /// `None` when no watcher could be made; the rescan still runs.
    watcher: Option<RecommendedWatcher>,
    root: PathBuf,
    mode: RecursiveMode,
    /// Whether `root` is being watched; retried at each rescan until it is
    /// (the directory may not exist yet).
    active: bool,
    /// Whether a failure to watch was logged (logged once, then debug).
    warned: bool,
}

impl Watch {
    fn new(pattern: &str, tx: mpsc::Sender<Wake>) -> Self {
        let (root, mode) = watch_root(pattern);
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            let wake = match res {
                Ok(ev) => match ev.kind {
                    EventKind::Access(_) => return,
                    EventKind::Modify(ModifyKind::Data(_) | ModifyKind::Metadata(_)) => Wake::Data,
                    _ => Wake::Layout,
                },
                Err(_) => Wake::Layout,
            };
            // A full queue already guarantees a pass (see `drain_wakes`).
            let _ = tx.try_send(wake);
        });
        let watcher = match watcher {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    "Cannot create a file watcher; relying on the periodic rescan"
                );
                None
            }
        };
        Watch {
            watcher,
            root,
            mode,
            active: false,
            warned: false,
        }
    }

    fn ensure(&mut self) {
        let Some(watcher) = self.watcher.as_mut() else {
            return;
        };
        if self.active {
            return;
        }
        match watcher.watch(&self.root, self.mode) {
            Ok(()) => {
                self.active = true;
                tracing::debug!(path = %self.root.display(), "Watching directory for file changes");
            }
            Err(e) if !self.warned => {
                self.warned = true;
                tracing::warn!(
                    path = %self.root.display(),
                    error = %e,
                    "Cannot watch directory; relying on the periodic rescan until it can"
                );
            }
            Err(e) => {
                tracing::debug!(
                    path = %self.root.display(),
                    error = %e,
                    "Cannot watch directory yet"
                );
            }
        }
    }
}

/// The deepest directory of `pattern` without glob metacharacters, and
/// whether matches can lie below its direct children.
fn watch_root(pattern: &str) -> (PathBuf, RecursiveMode) {
    let is_glob = |c: &Component<'_>| {
        let s = c.as_os_str().to_string_lossy();
        s.contains(['*', '?', '['])
    };
    let path = Path::new(pattern);
    let mut root = PathBuf::new();
    let mut rest: Vec<Component<'_>> = Vec::new();
    for c in path.components() {
        if rest.is_empty() && !is_glob(&c) {
            root.push(c);
        } else {
            rest.push(c);
        }
    }
    if rest.is_empty() {
        // A plain path: watch its directory.
        root.pop();
        rest.push(Component::CurDir);
    }
    if root.as_os_str().is_empty() {
        root.push(".");
    }
    let deep = rest.len() > 1
        || rest
            .iter()
            .any(|c| c.as_os_str().to_string_lossy().contains("**"));
    let mode = if deep {
        RecursiveMode::Recursive
    } else {
        RecursiveMode::NonRecursive
    };
    (root, mode)
}

/// Why reading stopped: shutdown, or the engine no longer takes batches.
#[derive(Debug)]
struct Stopped;

/// Why reading one file stopped early.
enum ReadError {
    Stopped,
    Io(io::Error),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        ReadError::Io(e)
    }
}

impl From<Stopped> for ReadError {
    fn from(_: Stopped) -> Self {
        ReadError::Stopped
    }
}

/// One followed file and how far it has been read.
struct Tailed {
    /// Where the glob last found it: the offset's `path`, under which its
    /// position is logged. A rotated-away file keeps the path it had.
    path: PathBuf,
    identity: Identity,
    /// Kept open: a rotated or deleted file is still read to its end.
    file: File,
    /// Bytes read from the file so far.
    read_pos: u64,
    /// Offset right after the last complete line taken (≤ `read_pos`).
    line_end: u64,
    /// The incomplete line read so far (at most `max_line` bytes); always
    /// `read_pos - line_end` bytes unless `skipping`.
    line: Vec<u8>,
    /// Discarding bytes up to the next newline (an over-long line, or the
    /// partial line found when starting at the end).
    skipping: bool,
    /// Whether a read error was logged; logged again only after a success.
    failing: bool,
    /// The last bytes read, up to [`TAIL`], ending at `read_pos`: when they
    /// are no longer there, the file was truncated and written again.
    tail: Vec<u8>,
    /// Set once the glob no longer finds the file (rotated away or
    /// deleted): when it last grew. It is read until it has been quiet for
    /// the rotate wait, then dropped.
    rotated: Option<Instant>,
    /// Whether its batches carry its position. Only the oldest followed
    /// file with a given `path` logs it: while a rotated-away file is still
    /// read, its successor at the path reads without logging, so the logged
    /// position of a path never goes back to an older file.
    logs: bool,
}

impl Tailed {
    fn new(path: PathBuf, identity: Identity, file: File, start: u64, tail: Vec<u8>) -> Self {
        Tailed {
            path,
            identity,
            file,
            read_pos: start,
            line_end: start,
            line: Vec::new(),
            skipping: false,
            failing: false,
            tail,
            rotated: None,
            logs: true,
        }
    }

    fn position(&self) -> Option<FileOffset> {
        self.logs.then(|| FileOffset {
            path: self.path.to_string_lossy().into_owned(),
            identity: self.identity,
            offset: self.line_end,
        })
    }

    async fn restart(&mut self) -> io::Result<()> {
        self.file.seek(SeekFrom::Start(0)).await?;
        self.read_pos = 0;
        self.line_end = 0;
        self.line.clear();
        self.skipping = false;
        self.tail.clear();
        Ok(())
    }

    /// Whether the bytes before `read_pos` are still those read; leaves
    /// the file at `read_pos` when they are.
    async fn tail_intact(&mut self) -> io::Result<bool> {
        if self.tail.is_empty() {
            return Ok(true);
        }
        let k = self.tail.len();
        let mut now = [0u8; TAIL];
        self.file
            .seek(SeekFrom::Start(self.read_pos - k as u64))
            .await?;
        match self.file.read_exact(&mut now[..k]).await {
            Ok(_) => Ok(now[..k] == self.tail[..]),
            // Shrunk since its size was taken.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
            Err(e) => {
                // Back where reading goes on, if the file still lets us.
                let _ = self.file.seek(SeekFrom::Start(self.read_pos)).await;
                Err(e)
            }
        }
    }
}

/// Keeps in `tail` the last [`TAIL`] bytes of what was read, `bytes`
/// (read just now) included.
fn keep_tail(tail: &mut Vec<u8>, bytes: &[u8]) {
    if bytes.len() >= TAIL {
        tail.clear();
        tail.extend_from_slice(&bytes[bytes.len() - TAIL..]);
    } else {
        let excess = (tail.len() + bytes.len()).saturating_sub(TAIL);
        tail.drain(..excess);
        tail.extend_from_slice(bytes);
    }
}

/// Up to [`TAIL`] bytes of `file` ending at `pos` (fewer near the start);
/// leaves the file at `pos`.
async fn bytes_before(file: &mut File, pos: u64) -> io::Result<Vec<u8>> {
    let k = pos.min(TAIL as u64);
    let mut tail = vec![0u8; k as usize];
    file.seek(SeekFrom::Start(pos - k)).await?;
    file.read_exact(&mut tail).await?;
    Ok(tail)
}

/// Sets [`Tailed::logs`]: a file logs its position unless an earlier one
/// (a rotated-away file, still being read) has the same path.
fn assign_logging(files: &mut [Tailed]) {
    let mut earlier: Vec<PathBuf> = Vec::new();
    for t in files {
        t.logs = !earlier.contains(&t.path);
        if t.rotated.is_some() {
            earlier.push(t.path.clone());
        }
    }
}

/// The file in `dir` with `identity`, if any (a rotated file, renamed to a
/// name the glob need not match).
fn locate(dir: &Path, identity: Identity) -> Option<PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        if let Ok(meta) = entry.metadata()
            && meta.is_file()
            && (meta.dev(), meta.ino()) == identity
        {
            return Some(entry.path());
        }
    }
    None
}

/// Where decoded lines go, shared by every followed file.
struct Out {
    ingest: Ingest,
    shutdown: CancellationToken,
    max_line: usize,
}

impl Out {
    /// Hands `events` (the lines up to `t.line_end`) to the engine and waits
    /// until it has taken them. With no events, the batch only logs the
    /// file's position.
    async fn send(&self, t: &Tailed, events: &mut Vec<Event>) -> Result<(), Stopped> {
        let n = events.len() as u64;
        let (done, taken) = oneshot::channel();
        let batch = Batch::new(
            SOURCE,
            std::mem::take(events),
            t.position(),
            None,
            Some(done),
        )
        .prepared_by(&self.ingest.preparer);
        tokio::select! {
            biased;
            _ = self.shutdown.cancelled() => return Err(Stopped),
            // The engine is behind: stop reading until it catches up.
            () = self.ingest.backlog.until_room() => {}
        }
        tokio::select! {
            biased;
            _ = self.shutdown.cancelled() => return Err(Stopped),
            sent = self.ingest.tx.send(EngineMsg::Batch(batch)) => {
                if sent.is_err() {
                    tracing::info!("Engine queue closed; file source stops");
                    return Err(Stopped);
                }
            }
        }
        self.ingest.metrics.received(SOURCE, n);
        tokio::select! {
            biased;
            _ = self.shutdown.cancelled() => Err(Stopped),
            answer = taken => answer.map_err(|_| {
                tracing::warn!(
                    path = %t.path.display(),
                    "Engine dropped a batch unanswered; file source stops"
                );
                Stopped
            }),
        }
    }

    /// Decodes one complete line (without its newline, at most `max_line`
    /// bytes); rejections are counted by [`Ingest::decode`].
    fn line(&self, bytes: &[u8], at: EventTime, events: &mut Vec<Event>) {
        if let Ok(Some(ev)) = self.ingest.decode(SOURCE, bytes, at) {
            events.push(ev);
        }
    }

    /// Rejects the line starting at `t.line_end`: it exceeds `max_line`.
    fn too_long(&self, t: &Tailed) {
        self.ingest.metrics.reject(SOURCE, "too_large");
        tracing::debug!(
            path = %t.path.display(),
            offset = t.line_end,
            max_line = self.max_line,
            "Rejected an over-long line"
        );
    }

    /// Reads `t` from its position to its end, handing over every complete
    /// line. When `last` (the file is being dropped), a final line without
    /// newline counts too, as nothing will complete it here.
    async fn read(&self, t: &mut Tailed, buf: &mut [u8], last: bool) -> Result<(), ReadError> {
        let len = t.file.metadata().await?.len();
        if len < t.read_pos {
            tracing::info!(
                path = %t.path.display(),
                size = len,
                offset = t.read_pos,
                "File truncated; reading it from its start"
            );
            t.restart().await?;
        } else if len > t.read_pos && !t.tail_intact().await? {
            // Checked when there is more to read (a rewrite that has not
            // grown past the position yet is caught once it has).
            // Truncated and written past the position again before this
            // pass (copytruncate, then the application's next lines).
            tracing::info!(
                path = %t.path.display(),
                size = len,
                offset = t.read_pos,
                "File rewritten (truncated and written again); reading it from its start"
            );
            t.restart().await?;
        }
        let mut events = Vec::new();
        let outcome = self.read_lines(t, buf, &mut events).await;
        if let Err(ReadError::Stopped) = outcome {
            return outcome;
        }
        if last && outcome.is_ok() && !t.skipping && !t.line.is_empty() {
            t.line_end = t.read_pos;
            self.line(&t.line, now(), &mut events);
            t.line.clear();
        }
        // Lines taken before an error are handed over all the same.
        if !events.is_empty() {
            self.send(t, &mut events).await?;
        }
        outcome
    }

    async fn read_lines(
        &self,
        t: &mut Tailed,
        buf: &mut [u8],
        events: &mut Vec<Event>,
    ) -> Result<(), ReadError> {
        loop {
            if self.shutdown.is_cancelled() {
                return Err(ReadError::Stopped);
            }
            let n = t.file.read(buf).await?;
            if n == 0 {
                return Ok(());
            }
            let base = t.read_pos;
            let at = now();
            let mut consumed = 0;
            while consumed < n {
                let rest = &buf[consumed..n];
                match super::find_newline(rest) {
                    Some(nl) => {
                        if !t.skipping {
                            if t.line.len() + nl > self.max_line {
                                self.too_long(t);
                            } else if t.line.is_empty() {
                                self.line(&rest[..nl], at, events);
                            } else {
                                t.line.extend_from_slice(&rest[..nl]);
                                self.line(&t.line, at, events);
                            }
                        }
                        t.line.clear();
                        t.skipping = false;
                        consumed += nl + 1;
                        t.line_end = base + consumed as u64;
                        if events.len() >= BATCH {
                            self.send(t, events).await?;
                        }
                    }
                    None => {
                        if !t.skipping {
                            if t.line.len() + rest.len() > self.max_line {
                                self.too_long(t);
                                t.line.clear();
                                t.skipping = true;
                            } else {
                                t.line.extend_from_slice(rest);
                            }
                        }
                        consumed = n;
                    }
                }
            }
            keep_tail(&mut t.tail, &buf[..n]);
            t.read_pos = base + n as u64;
        }
    }
}

/// The followed files and the pass over them.
struct Tailer {
    cfg: FileSourceConfig,
    out: Out,
    /// In discovery order, so a rotated file is read before its successor.
    files: Vec<Tailed>,
    /// This source's logged positions (their path matches the pattern) not
    /// yet used; dropped after the first complete scan, except those whose
    /// directory is missing.
    resume: Vec<FileOffset>,
    /// Whether the source runs for the first time: no logged position
    /// matches its pattern. Only then does `start_at` apply (to the files
    /// of the first scan); otherwise every unknown file is new.
    fresh: bool,
    /// Whether the first scan is done: files found later are new and are
    /// read from their beginning, whatever `start_at` says.
    started: bool,
    /// How long a rotated-away file must stay unchanged to be dropped.
    rotate_wait: Duration,
    /// Whether a scan failure was logged (logged again after a success).
    scan_failing: bool,
    buf: Vec<u8>,
}

/// What one glob pass found.
struct Found {
    files: Vec<(PathBuf, Identity)>,
    /// False when part of the tree could not be read: then no followed file
    /// is taken for gone.
    complete: bool,
}

fn glob_files(pattern: &str) -> Found {
    let mut found = Found {
        files: Vec::new(),
        complete: true,
    };
    let paths = match glob::glob(pattern) {
        Ok(p) => p,
        Err(_) => {
            found.complete = false;
            return found;
        }
    };
    for entry in paths {
        match entry {
            Ok(path) => match std::fs::metadata(&path) {
                Ok(meta) if meta.is_file() => found.files.push((path, (meta.dev(), meta.ino()))),
                Ok(_) => {}
                // Gone since it was listed.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(_) => found.complete = false,
            },
            Err(_) => found.complete = false,
        }
    }
    found
}

/// Whether `path` is one the glob `pattern` can yield (`*` stays within a
/// path component, as when the glob walks the tree).
fn matches(pattern: &glob::Pattern, path: &Path) -> bool {
    let opts = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: false,
    };
    pattern.matches_path_with(path, opts)
}

impl Tailer {
    fn new(
        cfg: FileSourceConfig,
        ingest: Ingest,
        resume: Vec<FileOffset>,
        shutdown: CancellationToken,
    ) -> Self {
        let out = Out {
            ingest,
            shutdown,
            max_line: cfg.max_line,
        };
        // The positions logged by this source: other sources' are ignored.
        let resume: Vec<FileOffset> = match glob::Pattern::new(&cfg.pattern) {
            Ok(p) => resume
                .into_iter()
                .filter(|r| matches(&p, Path::new(&r.path)))
                .collect(),
            Err(_) => Vec::new(),
        };
        Tailer {
            out,
            files: Vec::new(),
            fresh: resume.is_empty(),
            resume,
            started: false,
            rotate_wait: cfg.poll_interval.max(MIN_POLL) * ROTATE_WAIT_POLLS,
            scan_failing: false,
            buf: vec![0; CHUNK],
            cfg,
        }
    }

    /// The resume offset of the file with `identity` found at `path`, if
    /// one was logged: the one logged for that path, else (renamed while
    /// down) the furthest. Used up either way.
    fn take_resume(&mut self, identity: Identity, path: &Path) -> Option<u64> {
        let mut best: Option<(bool, u64)> = None;
        for r in self.resume.iter().filter(|r| r.identity == identity) {
            let candidate = (Path::new(&r.path) == path, r.offset);
            if best.is_none_or(|b| candidate > b) {
                best = Some(candidate);
            }
        }
        self.resume.retain(|r| r.identity != identity);
        best.map(|(_, offset)| offset)
    }

    /// Brings the followed set up to date with the glob: files that left it
    /// are read to their current end and kept until quiet, new files are
    /// opened.
    async fn scan(&mut self) -> Result<(), Stopped> {
        let pattern = self.cfg.pattern.clone();
        let found = match tokio::task::spawn_blocking(move || glob_files(&pattern)).await {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = %e, "File scan failed");
                return Ok(());
            }
        };
        if !found.complete && !self.scan_failing {
            tracing::warn!(
                pattern = %self.cfg.pattern,
                "Cannot read every directory the pattern covers; some files may be missed"
            );
        }
        self.scan_failing = !found.complete;

        // Files the glob no longer finds: rotated away or deleted. Read
        // what they hold now first, so those lines come before any of a
        // successor; then they are read until quiet (`read_all`), since
        // the application may still be writing to them.
        assign_logging(&mut self.files);
        for t in &mut self.files {
            let gone = t.rotated.is_none()
                && found.complete
                && !found.files.iter().any(|(_, id)| *id == t.identity);
            if !gone {
                continue;
            }
            tracing::info!(
                path = %t.path.display(),
                offset = t.line_end,
                "Followed file rotated away or deleted; reading it until it stays unchanged"
            );
            t.rotated = Some(Instant::now());
            match self.out.read(t, &mut self.buf, false).await {
                Ok(()) => {}
                Err(ReadError::Stopped) => return Err(Stopped),
                Err(ReadError::Io(e)) => {
                    tracing::warn!(
                        path = %t.path.display(),
                        error = %e,
                        "Cannot read a rotated or deleted file"
                    );
                }
            }
        }

        if !self.started {
            self.resume_rotated(&found).await;
        }

        // Files known to the log first, so that a file renamed within the
        // glob while the daemon was down is read before its successor.
        let mut found_files = found.files;
        if !self.started {
            let known: Vec<Identity> = self.resume.iter().map(|r| r.identity).collect();
            found_files.sort_by_key(|(_, id)| !known.contains(id));
        }
        for (path, identity) in found_files {
            if let Some(t) = self.files.iter_mut().find(|t| t.identity == identity) {
                if t.path != path {
                    tracing::info!(
                        from = %t.path.display(),
                        to = %path.display(),
                        "Followed file renamed"
                    );
                    t.path = path;
                }
                // Back in the glob: followed again.
                t.rotated = None;
                continue;
            }
            match self.open(&path).await {
                Ok(Some((t, at_end))) => {
                    self.files.push(t);
                    if at_end {
                        // Logs the start position, so that a restart knows
                        // the file and does not read it from its start.
                        assign_logging(&mut self.files);
                        if let Some(t) = self.files.last() {
                            self.out.send(t, &mut Vec::new()).await?;
                        }
                    }
                }
                Ok(None) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(path = %path.display(), error = %e, "Cannot open file"),
            }
        }
        if found.complete {
            // Used or stale (a logged file gone while the daemon was down,
            // whose inode may be reused). Kept only for a missing directory
            // (e.g. not mounted yet).
            self.resume.retain(|r| {
                Path::new(&r.path)
                    .parent()
                    .is_some_and(|d| !d.as_os_str().is_empty() && !d.exists())
            });
        }
        self.started = true;
        Ok(())
    }

    /// At start: a logged file the glob does not find (rotated while the
    /// daemon was down) is looked for by identity in its directory; found,
    /// its unread tail is read first, from its logged offset, before the
    /// file now at its path.
    async fn resume_rotated(&mut self, found: &Found) {
        let mut lost: Vec<FileOffset> = Vec::new();
        for r in &self.resume {
            if found.files.iter().any(|(_, id)| *id == r.identity) {
                continue;
            }
            match lost.iter_mut().find(|l| l.identity == r.identity) {
                Some(l) if l.offset >= r.offset => {}
                Some(l) => *l = r.clone(),
                None => lost.push(r.clone()),
            }
        }
        for r in lost {
            self.resume.retain(|o| o.identity != r.identity);
            let logged = PathBuf::from(&r.path);
            let Some(dir) = logged.parent().map(Path::to_path_buf) else {
                continue;
            };
            let identity = r.identity;
            let Ok(Some(at)) = tokio::task::spawn_blocking(move || locate(&dir, identity)).await
            else {
                continue;
            };
            match self.open_rotated(logged, &at, identity, r.offset).await {
                Ok(Some(t)) => self.files.push(t),
                Ok(None) => {}
                Err(e) => tracing::warn!(
                    path = %at.display(),
                    error = %e,
                    "Cannot read the rest of a rotated file"
                ),
            }
        }
    }

    /// Opens the rotated file at `at`, logged as `path` up to `offset`, to
    /// read it from there; `None` when it has nothing more.
    async fn open_rotated(
        &mut self,
        path: PathBuf,
        at: &Path,
        identity: Identity,
        offset: u64,
    ) -> io::Result<Option<Tailed>> {
        let mut file = File::open(at).await?;
        let meta = file.metadata().await?;
        if (meta.dev(), meta.ino()) != identity || meta.len() <= offset {
            return Ok(None);
        }
        let tail = bytes_before(&mut file, offset).await?;
        tracing::info!(
            path = %at.display(),
            logged_as = %path.display(),
            offset,
            size = meta.len(),
            "Reading the rest of a file rotated while stopped, from its logged offset"
        );
        let mut t = Tailed::new(path, identity, file, offset, tail);
        t.rotated = Some(Instant::now());
        Ok(Some(t))
    }

    /// Opens a newly found file at its start position, and says whether
    /// that is its end by `start_at: end`; `None` when it turns out not to
    /// be a new regular file.
    async fn open(&mut self, path: &Path) -> io::Result<Option<(Tailed, bool)>> {
        let mut file = File::open(path).await?;
        let meta = file.metadata().await?;
        // The identity of what was opened, which may differ from the glob's
        // if the path was just replaced.
        let identity = (meta.dev(), meta.ino());
        if !meta.is_file() || self.files.iter().any(|t| t.identity == identity) {
            return Ok(None);
        }
        let len = meta.len();
        let mut skipping = false;
        let mut at_end = false;
        // The start position, and the bytes before it when they were read
        // to choose it (kept as the file's tail rather than read again).
        let (start, before) = if let Some(offset) = self.take_resume(identity, path) {
            if offset > len {
                tracing::info!(
                    path = %path.display(),
                    offset,
                    size = len,
                    "File shorter than its resume offset; reading it from its start"
                );
                (0, None)
            } else {
                let before = bytes_before(&mut file, offset).await?;
                if offset > 0 && before.last() != Some(&b'\n') {
                    // A logged offset follows a line: the content changed.
                    tracing::info!(
                        path = %path.display(),
                        offset,
                        size = len,
                        "File rewritten since its resume offset was logged; reading it from its start"
                    );
                    (0, None)
                } else {
                    tracing::info!(
                        path = %path.display(),
                        offset,
                        "Following file from its resume offset"
                    );
                    (offset, Some(before))
                }
            }
        } else if self.fresh && !self.started && self.cfg.start_at == StartAt::End {
            let before = bytes_before(&mut file, len).await?;
            // Starting inside a line would hand over its tail as a line.
            skipping = before.last().is_some_and(|&b| b != b'\n');
            at_end = !skipping;
            tracing::info!(path = %path.display(), offset = len, "Following file from its end");
            (len, Some(before))
        } else {
            tracing::info!(path = %path.display(), "Following file from its start");
            (0, None)
        };
        // `bytes_before` leaves the file at `start`.
        let tail = match before {
            Some(b) => b,
            None => bytes_before(&mut file, start).await?,
        };
        let mut t = Tailed::new(path.to_path_buf(), identity, file, start, tail);
        t.skipping = skipping;
        Ok(Some((t, at_end)))
    }

    /// Reads every followed file to its current end, and drops rotated-away
    /// files that have stayed unchanged for the rotate wait.
    async fn read_all(&mut self) -> Result<(), Stopped> {
        assign_logging(&mut self.files);
        let mut i = 0;
        while i < self.files.len() {
            let t = &mut self.files[i];
            let before = t.read_pos;
            let quiet = t.rotated.is_some_and(|at| at.elapsed() >= self.rotate_wait);
            match self.out.read(t, &mut self.buf, false).await {
                Ok(()) => t.failing = false,
                Err(ReadError::Stopped) => return Err(Stopped),
                Err(ReadError::Io(e)) => {
                    if !t.failing {
                        tracing::warn!(
                            path = %t.path.display(),
                            error = %e,
                            "Cannot read file; retrying at the next pass"
                        );
                    }
                    t.failing = true;
                }
            }
            if t.rotated.is_some() && t.read_pos != before {
                t.rotated = Some(Instant::now());
            } else if quiet {
                // A final line without newline counts now.
                match self.out.read(t, &mut self.buf, true).await {
                    Err(ReadError::Stopped) => return Err(Stopped),
                    Ok(()) | Err(ReadError::Io(_)) => {}
                }
                let t = self.files.remove(i);
                tracing::info!(
                    path = %t.path.display(),
                    offset = t.line_end,
                    "Stopped following file: rotated or deleted, and unchanged since"
                );
                // The next file with its path (its successor) logs its
                // position from now on, starting with where it is.
                assign_logging(&mut self.files);
                if let Some(next) = self.files.iter().find(|n| n.path == t.path && n.logs) {
                    self.out.send(next, &mut Vec::new()).await?;
                }
                continue;
            }
            i += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logged_paths_are_matched_as_the_glob_walks() {
        let p = glob::Pattern::new("/logs/**/a?.ndjson").unwrap();
        assert!(matches(&p, Path::new("/logs/a2.ndjson")));
        assert!(matches(&p, Path::new("/logs/sub/deeper/a1.ndjson")));
        assert!(!matches(&p, Path::new("/logs/a10.ndjson")));
        assert!(!matches(&p, Path::new("/logs/a2.ndjson.1")));
        let p = glob::Pattern::new("/logs/*.ndjson").unwrap();
        assert!(matches(&p, Path::new("/logs/app.ndjson")));
        // `*` does not cross a directory, as in the walk.
        assert!(!matches(&p, Path::new("/logs/sub/app.ndjson")));
        assert!(!matches(&p, Path::new("/other/app.ndjson")));
    }

    #[test]
    fn the_tail_keeps_the_last_bytes_read() {
        let all: Vec<u8> = (0..200u8).collect();
        for size in [1, 7, TAIL, 100] {
            let mut tail = Vec::new();
            for chunk in all.chunks(size) {
                keep_tail(&mut tail, chunk);
            }
            assert_eq!(tail, all[200 - TAIL..], "chunks of {size}");
        }
        let mut tail = Vec::new();
        keep_tail(&mut tail, &all[..10]);
        assert_eq!(tail, all[..10]);
    }
}
