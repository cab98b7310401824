//! The file source against real files in a temporary directory: start
//! positions, partial lines, rotation, truncation, new files, resume
//! offsets, over-long lines, back-pressure and shutdown. The test plays the
//! engine: it reads the source's queue and answers each batch.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;

use tocsin::metrics::{Metrics, RejectLabels, SourceLabel};
use tocsin::source::file::{FileSourceConfig, StartAt, run};
use tocsin::source::{Batch, EngineMsg, FileOffset, Ingest};

/// How long anything expected may take to arrive.
const WAIT: Duration = Duration::from_secs(5);
/// How long "nothing arrives" is watched for.
const QUIET: Duration = Duration::from_millis(300);

/// One input line (without newline) numbered `n`.
fn ev(n: u32) -> String {
    format!(r#"{{"type":"t","ts":{n},"n":{n}}}"#)
}

fn lines(ns: impl IntoIterator<Item = u32>) -> Vec<String> {
    ns.into_iter().map(ev).collect()
}

fn text(ns: impl IntoIterator<Item = u32>) -> String {
    ns.into_iter().map(|n| ev(n) + "\n").collect()
}

fn append(path: &Path, s: &str) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open for append");
    f.write_all(s.as_bytes()).expect("append");
}

fn identity(path: &Path) -> (u64, u64) {
    let m = std::fs::metadata(path).expect("metadata");
    (m.dev(), m.ino())
}

fn config(dir: &Path, start_at: StartAt) -> FileSourceConfig {
    FileSourceConfig {
        pattern: format!("{}/*.ndjson", dir.display()),
        start_at,
        poll_interval: Duration::from_millis(100),
        max_line: 1 << 16,
    }
}

/// A running file source and the engine side of its queue.
struct Source {
    rx: mpsc::Receiver<EngineMsg>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
    /// Every position logged so far, in order (with lines or without: a
    /// batch without events only logs a position), as the engine's map of
    /// offsets by path would see them.
    logged: Vec<FileOffset>,
}

fn start(cfg: FileSourceConfig, resume: Vec<FileOffset>) -> Source {
    let (tx, rx) = mpsc::channel(4);
    let metrics = Arc::new(Metrics::new());
    let ingest = Ingest {
        decoder: tocsin::decode::Decoder::default(),
        max_event_bytes: 1 << 20,
        max_future_ms: i64::MAX / 4,
        metrics: metrics.clone(),
        tx,
        backlog: Arc::new(tocsin::source::Backlog::new(1 << 20)),
        rejects: Default::default(),
        preparer: Default::default(),
    };
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(run(cfg, ingest, resume, shutdown.clone()));
    Source {
        rx,
        metrics,
        shutdown,
        task,
        logged: Vec::new(),
    }
}

impl Source {
    /// The next batch with events, unanswered; batches that only log a
    /// position are answered and their position recorded on the way.
    async fn batch(&mut self) -> Batch {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match timeout(left, self.rx.recv()).await {
                Ok(Some(EngineMsg::Batch(b))) => {
                    if let Some(b) = self.note(b) {
                        return b;
                    }
                }
                Ok(Some(other)) => panic!("expected a batch, got {other:?}"),
                Ok(None) => panic!("the file source stopped"),
                Err(_) => panic!("no batch within {WAIT:?}"),
            }
        }
    }

    /// Records `b`'s position; answers it and returns `None` if it has no
    /// events.
    fn note(&mut self, mut b: Batch) -> Option<Batch> {
        if let Some(o) = &b.offset {
            self.logged.push(o.clone());
        }
        if b.events.is_empty() {
            let _ = b
                .done
                .take()
                .expect("a file batch waits for an answer")
                .send(());
            return None;
        }
        Some(b)
    }

    /// Waits for a batch without events logging a position that `pred`
    /// accepts; batches with events may not come meanwhile.
    async fn position(&mut self, pred: impl Fn(&FileOffset) -> bool) -> FileOffset {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match timeout(left, self.rx.recv()).await {
                Ok(Some(EngineMsg::Batch(b))) => {
                    let offset = b.offset.clone();
                    if let Some(b) = self.note(b) {
                        panic!("expected only a position, got {:?}", b.events);
                    }
                    if let Some(o) = offset.filter(|o| pred(o)) {
                        return o;
                    }
                }
                Ok(Some(other)) => panic!("expected a batch, got {other:?}"),
                Ok(None) => panic!("the file source stopped"),
                Err(_) => panic!("no position logged within {WAIT:?}"),
            }
        }
    }

    /// The last position logged for `path`, as the engine's map of offsets
    /// (by path) holds it: what a restart resumes from.
    fn resume(&self) -> Vec<FileOffset> {
        let mut by_path: Vec<FileOffset> = Vec::new();
        for o in &self.logged {
            by_path.retain(|p| p.path != o.path);
            by_path.push(o.clone());
        }
        by_path
    }

    /// Takes (and answers) batches until `until` says the lines so far are
    /// complete; returns the lines and the offset of the last batch.
    async fn take_until(&mut self, until: impl Fn(&[String]) -> bool) -> (Vec<String>, FileOffset) {
        let (got, offset) = self.take_until_any(until).await;
        (got, offset.expect("the last batch carries its offset"))
    }

    /// As `take_until`, when the last batch may carry no offset (that of a
    /// file whose rotated-away predecessor is still being read).
    async fn take_until_any(
        &mut self,
        until: impl Fn(&[String]) -> bool,
    ) -> (Vec<String>, Option<FileOffset>) {
        let mut got = Vec::new();
        loop {
            let mut b = self.batch().await;
            assert_eq!(&*b.source, "file");
            assert!(
                !b.events.is_empty() && b.events.len() <= 1024,
                "batch of {}",
                b.events.len()
            );
            got.extend(b.events.iter().map(|e| e.raw().to_string()));
            let offset = b.offset.take();
            let _ = b
                .done
                .take()
                .expect("a file batch waits for an answer")
                .send(());
            if until(&got) {
                return (got, offset);
            }
        }
    }

    /// Takes batches until `n` lines have come.
    async fn take(&mut self, n: usize) -> (Vec<String>, FileOffset) {
        self.take_until(|got| got.len() >= n).await
    }

    /// Asserts that no batch comes for a moment.
    async fn quiet(&mut self) {
        if let Ok(msg) = timeout(QUIET, self.rx.recv()).await {
            panic!("expected nothing, got {msg:?}");
        }
    }

    /// Appends numbered probe lines to `path` until the source hands one
    /// over, proving it follows the file; returns the probes appended.
    async fn sync(&mut self, path: &Path, first: u32) -> Vec<String> {
        let deadline = Instant::now() + WAIT;
        let mut probes = Vec::new();
        let mut n = first;
        loop {
            append(path, &text([n]));
            probes.push(ev(n));
            n += 1;
            if let Ok(msg) = timeout(Duration::from_millis(50), self.rx.recv()).await {
                let Some(EngineMsg::Batch(b)) = msg else {
                    panic!("expected a batch");
                };
                let Some(mut b) = self.note(b) else {
                    continue;
                };
                let got: Vec<String> = b.events.iter().map(|e| e.raw().to_string()).collect();
                let _ = b.done.take().expect("done").send(());
                assert!(
                    got.iter().all(|l| probes.contains(l)),
                    "unexpected lines {got:?}"
                );
                return probes;
            }
            assert!(Instant::now() < deadline, "the source never read a probe");
        }
    }

    fn rejected(&self, reason: &str) -> u64 {
        self.metrics
            .events_rejected
            .get_or_create(&RejectLabels {
                source: "file".into(),
                reason: reason.into(),
            })
            .get()
    }

    fn received(&self) -> u64 {
        self.metrics
            .events_received
            .get_or_create(&SourceLabel {
                source: "file".into(),
            })
            .get()
    }

    /// Cancels the source and asserts that it stops promptly; returns the
    /// positions a restart resumes from.
    async fn stop(self) -> Vec<FileOffset> {
        let resume = self.resume();
        self.shutdown.cancel();
        timeout(WAIT, self.task)
            .await
            .expect("the source stops promptly")
            .expect("the source task does not panic");
        resume
    }
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).expect("metadata").len()
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

#[tokio::test]
async fn start_at_beginning_reads_existing_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("app.ndjson");
    append(&path, &text(1..=3));
    let mut src = start(config(dir.path(), StartAt::Beginning), Vec::new());
    let (got, offset) = src.take(3).await;
    assert_eq!(got, lines(1..=3));
    assert_eq!(
        offset,
        FileOffset {
            path: path_str(&path),
            identity: identity(&path),
            offset: file_len(&path),
        }
    );
    assert_eq!(src.received(), 3);
    src.quiet().await;
    src.stop().await;
}

#[tokio::test]
async fn start_at_end_skips_existing_lines_and_reads_appended_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("app.ndjson");
    // Ends inside a line: its tail must not be read as a line either.
    append(&path, &(text(1..=3) + r#"{"type":"t","#));
    let mut src = start(config(dir.path(), StartAt::End), Vec::new());
    let probes = src.sync(&path, 100).await;
    append(&path, &text([200, 201]));
    let (got, offset) = src.take_until(|got| got.last() == Some(&ev(201))).await;
    // Probes appended before the first scan are skipped, later ones not.
    let mut expected: Vec<String> = probes.iter().filter(|p| got.contains(p)).cloned().collect();
    expected.extend(lines([200, 201]));
    assert_eq!(got, expected);
    assert_eq!(offset.offset, file_len(&path));
    assert_eq!(src.rejected("invalid_json"), 0);
    src.stop().await;
}

#[tokio::test]
async fn a_partial_line_is_read_once_completed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("app.ndjson");
    let second = ev(2);
    let (head, tail) = second.split_at(10);
    append(&path, &(text([1]) + head));
    let mut src = start(config(dir.path(), StartAt::Beginning), Vec::new());
    let (got, offset) = src.take(1).await;
    assert_eq!(got, lines([1]));
    assert_eq!(offset.offset, (ev(1).len() + 1) as u64);
    src.quiet().await;
    append(&path, &format!("{tail}\n"));
    let (got, offset) = src.take(1).await;
    assert_eq!(got, lines([2]));
    assert_eq!(offset.offset, file_len(&path));
    src.stop().await;
}

#[tokio::test]
async fn rotation_reads_the_old_file_until_quiet_and_the_new_one_meanwhile() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("app.ndjson");
    let rotated = dir.path().join("app.ndjson.1");
    append(&path, &text(1..=3));
    // A rotate wait (two polls) of 500 ms: room for the test's own steps.
    let cfg = FileSourceConfig {
        poll_interval: Duration::from_millis(250),
        ..config(dir.path(), StartAt::Beginning)
    };
    let mut src = start(cfg, Vec::new());
    assert_eq!(src.take(3).await.0, lines(1..=3));
    let old = identity(&path);

    // Lines written just before the rename are still to be read.
    append(&path, &text([4, 5]));
    std::fs::rename(&path, &rotated).expect("rename");
    append(&path, &text([6, 7]));
    let new = identity(&path);
    assert_ne!(old, new);
    let (got, _) = src.take_until_any(|got| got.len() >= 4).await;
    assert_eq!(got, lines(4..=7));

    // The application still writes to the old file (its descriptor) after
    // the rename was seen: those lines are read too.
    append(&rotated, &text([8]));
    let (got, offset) = src.take(1).await;
    assert_eq!(got, lines([8]));
    assert_eq!(
        offset,
        FileOffset {
            path: path_str(&path),
            identity: old,
            offset: file_len(&rotated),
        },
        "the old file logs its position under its path until dropped"
    );
    append(&path, &text([9]));
    let (got, offset) = src.take_until_any(|got| !got.is_empty()).await;
    assert_eq!(got, lines([9]));
    assert_eq!(
        offset, None,
        "the successor logs nothing while the old file is read"
    );

    // Unchanged for the rotate wait: dropped, and the new file's position
    // is logged from then on.
    let at = src.position(|o| o.identity == new).await;
    assert_eq!(
        at,
        FileOffset {
            path: path_str(&path),
            identity: new,
            offset: file_len(&path),
        }
    );
    // The logged position of the path never went back to the old file.
    let first_new = src.logged.iter().position(|o| o.identity == new);
    assert!(
        src.logged[first_new.expect("new logged")..]
            .iter()
            .all(|o| o.identity == new)
    );

    // The rotated file is no longer followed; the new one is.
    append(&rotated, &text([90]));
    append(&path, &text([10]));
    let (got, offset) = src.take(1).await;
    assert_eq!(got, lines([10]));
    assert_eq!((offset.identity, offset.offset), (new, file_len(&path)));
    src.quiet().await;
    src.stop().await;
}

#[tokio::test]
async fn a_file_renamed_within_the_glob_is_not_read_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("app.ndjson");
    let rotated = dir.path().join("app-1.ndjson");
    append(&path, &text(1..=2));
    let mut src = start(config(dir.path(), StartAt::Beginning), Vec::new());
    assert_eq!(src.take(2).await.0, lines(1..=2));
    append(&path, &text([3]));
    std::fs::rename(&path, &rotated).expect("rename");
    append(&path, &text([4]));
    let (got, _) = src.take(2).await;
    assert_eq!(got, lines(3..=4));
    // Both are followed: the renamed file under its new name.
    append(&rotated, &text([5]));
    let (got, offset) = src.take(1).await;
    assert_eq!(got, lines([5]));
    assert_eq!(offset.path, path_str(&rotated));
    src.quiet().await;
    src.stop().await;
}

#[tokio::test]
async fn truncation_restarts_at_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("app.ndjson");
    append(&path, &text(1..=3));
    let mut src = start(config(dir.path(), StartAt::Beginning), Vec::new());
    assert_eq!(src.take(3).await.0, lines(1..=3));
    let before = identity(&path);
    let mut f = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&path)
        .expect("truncate");
    f.write_all(text([4]).as_bytes()).expect("write");
    drop(f);
    assert_eq!(identity(&path), before);
    let (got, offset) = src.take(1).await;
    assert_eq!(got, lines([4]));
    assert_eq!(offset.offset, file_len(&path));
    src.quiet().await;
    src.stop().await;
}

/// Overwrites `path` from its start with `content` without ever making it
/// shorter: what copytruncate followed by new lines looks like when both
/// happen between two passes.
fn rewrite(path: &Path, content: &str) {
    let mut f = OpenOptions::new().write(true).open(path).expect("open");
    f.write_all(content.as_bytes()).expect("write");
}

#[tokio::test]
async fn a_file_rewritten_past_the_read_position_is_read_again_from_its_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("app.ndjson");
    append(&path, &text(1..=3));
    let mut src = start(config(dir.path(), StartAt::Beginning), Vec::new());
    let (_, offset) = src.take(3).await;
    let content = text(10..=15);
    let at = offset.offset as usize;
    assert!(content.len() > at);
    assert_ne!(
        content.as_bytes()[at - 64..at],
        text(1..=3).as_bytes()[at - 64..at]
    );
    rewrite(&path, &content);
    let (got, offset) = src.take(6).await;
    assert_eq!(got, lines(10..=15));
    assert_eq!(offset.offset, file_len(&path));
    assert_eq!(src.rejected("invalid_json"), 0);
    src.quiet().await;
    src.stop().await;
}

#[tokio::test]
async fn a_file_rewritten_past_its_resume_offset_while_stopped_is_read_from_its_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("app.ndjson");
    append(&path, &text(1..=3));
    let mut src = start(config(dir.path(), StartAt::Beginning), Vec::new());
    assert_eq!(src.take(3).await.0, lines(1..=3));
    let resume = src.stop().await;
    let at = resume[0].offset as usize;
    // Truncated (same file) and written past the old offset while stopped;
    // the old offset now falls inside a line.
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&path)
        .expect("truncate");
    let content = text(10..=15);
    assert_ne!(content.as_bytes()[at - 1], b'\n');
    append(&path, &content);
    let mut src = start(config(dir.path(), StartAt::Beginning), resume);
    let (got, _) = src.take(6).await;
    assert_eq!(got, lines(10..=15));
    assert_eq!(src.rejected("invalid_json"), 0);
    src.stop().await;
}

#[tokio::test]
async fn a_deleted_file_is_dropped_and_a_new_one_at_its_path_read_from_its_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("app.ndjson");
    append(&path, &text([1]));
    let mut src = start(config(dir.path(), StartAt::Beginning), Vec::new());
    assert_eq!(src.take(1).await.0, lines([1]));
    std::fs::remove_file(&path).expect("remove");
    src.quiet().await;
    // Past the rotate wait (two polls), so the deleted file is dropped and
    // the new one logs its position at once.
    tokio::time::sleep(Duration::from_millis(200)).await;
    append(&path, &text([2, 3]));
    let (got, offset) = src.take(2).await;
    assert_eq!(got, lines([2, 3]));
    assert_eq!(offset.identity, identity(&path));
    src.stop().await;
}

#[tokio::test]
async fn the_glob_picks_up_a_file_created_later_from_its_beginning() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = dir.path().join("a.ndjson");
    let second = dir.path().join("b.ndjson");
    append(&first, &text([1]));
    // Not matching the glob: never read.
    append(&dir.path().join("c.log"), &text([99]));
    let mut src = start(config(dir.path(), StartAt::End), Vec::new());
    let probes = src.sync(&first, 100).await;
    // Appeared after the start, so new: read whole although start_at is end.
    append(&second, &text(10..=11));
    let (got, offset) = src.take_until(|got| got.contains(&ev(11))).await;
    let from_second: Vec<String> = got.into_iter().filter(|l| !probes.contains(l)).collect();
    assert_eq!(from_second, lines(10..=11));
    assert_eq!(offset.path, path_str(&second));
    assert_eq!(offset.offset, file_len(&second));
    src.stop().await;
}

#[tokio::test]
async fn a_resume_offset_continues_after_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("app.ndjson");
    let other = dir.path().join("other.ndjson");
    append(&path, &text(1..=5));
    append(&other, &text(50..=51));
    let resume = vec![
        FileOffset {
            path: path_str(&path),
            identity: identity(&path),
            offset: text(1..=2).len() as u64,
        },
        // Another file's identity, found nowhere: `other` is a file the
        // source has not seen, so it is new and read from its start
        // although `start_at` is `end` (the source has run before).
        FileOffset {
            path: path_str(&other),
            identity: (u64::MAX, u64::MAX),
            offset: 0,
        },
        // Another source's file (not matched by the pattern): ignored.
        FileOffset {
            path: path_str(&dir.path().join("x.log")),
            identity: identity(&other),
            offset: 1,
        },
    ];
    let mut src = start(config(dir.path(), StartAt::End), resume);
    let (got, offset) = src.take(5).await;
    // The known file first.
    assert_eq!(got, lines([3, 4, 5, 50, 51]));
    assert_eq!(
        offset,
        FileOffset {
            path: path_str(&other),
            identity: identity(&other),
            offset: file_len(&other),
        }
    );
    assert!(src.logged.contains(&FileOffset {
        path: path_str(&path),
        identity: identity(&path),
        offset: file_len(&path),
    }));
    src.quiet().await;
    src.stop().await;
}

#[tokio::test]
async fn after_a_restart_a_file_created_while_stopped_is_read_from_its_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = dir.path().join("a.ndjson");
    let quiet = dir.path().join("q.ndjson");
    let b = dir.path().join("b.ndjson");
    append(&a, &text([1]));
    append(&quiet, &text([2]));
    // First start: `start_at: end` applies to the files present.
    let mut src = start(config(dir.path(), StartAt::End), Vec::new());
    let probes = src.sync(&a, 100).await;
    assert!(!probes.is_empty());
    let resume = src.stop().await;
    // Even the file never written to has its position logged.
    assert!(resume.iter().any(|o| o.path == path_str(&quiet)));

    // While stopped: a new file, and lines appended to both known ones.
    append(&b, &text(10..=11));
    append(&a, &text([12]));
    append(&quiet, &text([13]));
    let mut src = start(config(dir.path(), StartAt::End), resume);
    let (mut got, _) = src.take(4).await;
    got.sort();
    let mut expected = lines(10..=13);
    expected.sort();
    assert_eq!(got, expected, "nothing skipped, nothing read twice");
    src.quiet().await;
    src.stop().await;
}

#[tokio::test]
async fn a_file_rotated_while_stopped_is_read_to_its_end_before_its_successor() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("app.ndjson");
    // Not matched by the glob.
    let rotated = dir.path().join("app.ndjson.1");
    append(&path, &text(1..=3));
    let mut src = start(config(dir.path(), StartAt::Beginning), Vec::new());
    assert_eq!(src.take(3).await.0, lines(1..=3));
    let old = identity(&path);
    let resume = src.stop().await;
    assert_eq!(
        resume,
        vec![FileOffset {
            path: path_str(&path),
            identity: old,
            offset: file_len(&path),
        }]
    );

    // While stopped: more lines, then logrotate's rename and create.
    append(&path, &text([4, 5]));
    std::fs::rename(&path, &rotated).expect("rename");
    append(&path, &text([6]));
    let new = identity(&path);

    let mut src = start(config(dir.path(), StartAt::Beginning), resume);
    let (got, _) = src.take_until_any(|got| got.len() >= 3).await;
    assert_eq!(
        got,
        lines(4..=6),
        "the old file's tail first, then the new file"
    );
    assert!(src.logged.contains(&FileOffset {
        path: path_str(&path),
        identity: old,
        offset: file_len(&rotated),
    }));
    // Once the old one is dropped, the path's position is the new file's.
    let at = src.position(|o| o.identity == new).await;
    assert_eq!(at.offset, file_len(&path));
    src.quiet().await;
    let resume = src.stop().await;

    // A second restart reads neither again.
    let mut src = start(config(dir.path(), StartAt::Beginning), resume);
    src.quiet().await;
    append(&path, &text([7]));
    assert_eq!(src.take(1).await.0, lines([7]));
    src.stop().await;
}

#[tokio::test]
async fn an_over_long_line_is_rejected_and_the_next_line_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("app.ndjson");
    let max_line = 64;
    let long = format!(r#"{{"type":"t","ts":1,"pad":"{}"}}"#, "x".repeat(200));
    // Exactly `max_line` bytes: accepted.
    let pad = max_line - r#"{"type":"t","ts":7,"pad":""}"#.len();
    let fits = format!(r#"{{"type":"t","ts":7,"pad":"{}"}}"#, "y".repeat(pad));
    assert_eq!(fits.len(), max_line);
    append(&path, &format!("{}\n{long}\n{}\n{fits}\n", ev(1), ev(2)));
    let cfg = FileSourceConfig {
        max_line,
        ..config(dir.path(), StartAt::Beginning)
    };
    let mut src = start(cfg, Vec::new());
    let (got, _) = src.take(3).await;
    assert_eq!(got, vec![ev(1), ev(2), fits.clone()]);
    assert_eq!(src.rejected("too_large"), 1);

    // Over-long before its newline is even written: rejected once, and
    // the rest of it skipped when it comes.
    let (head, tail) = long.split_at(100);
    append(&path, head);
    src.quiet().await;
    assert_eq!(src.rejected("too_large"), 2);
    append(&path, &format!("{tail}\n{}\n", ev(3)));
    let (got, offset) = src.take(1).await;
    assert_eq!(got, lines([3]));
    assert_eq!(offset.offset, file_len(&path));
    assert_eq!(src.rejected("too_large"), 2);
    assert_eq!(src.received(), 4);
    src.stop().await;
}

#[tokio::test]
async fn no_further_batch_while_the_previous_is_unanswered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("app.ndjson");
    append(&path, &text(0..3000));
    let mut src = start(config(dir.path(), StartAt::Beginning), Vec::new());
    let mut first = src.batch().await;
    assert_eq!(first.events.len(), 1024);
    let offset = first.offset.take().expect("offset");
    assert_eq!(offset.offset, text(0..1024).len() as u64);
    // Held: the source must not read on.
    src.quiet().await;
    assert_eq!(src.received(), 1024);
    let _ = first.done.take().expect("done").send(());
    let (rest, offset) = src.take(3000 - 1024).await;
    let mut all: Vec<String> = first.events.iter().map(|e| e.raw().to_string()).collect();
    all.extend(rest);
    assert_eq!(all, lines(0..3000));
    assert_eq!(offset.offset, file_len(&path));
    src.stop().await;
}

#[tokio::test]
async fn shutdown_stops_the_source_even_while_a_batch_is_unanswered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("app.ndjson");
    append(&path, &text(0..2000));
    let mut src = start(config(dir.path(), StartAt::Beginning), Vec::new());
    let held = src.batch().await;
    src.stop().await;
    drop(held);
}

#[tokio::test]
async fn file_events_are_seen_without_waiting_for_the_rescan() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path: PathBuf = dir.path().join("app.ndjson");
    append(&path, &text([1]));
    let cfg = FileSourceConfig {
        poll_interval: Duration::from_secs(3600),
        ..config(dir.path(), StartAt::Beginning)
    };
    let mut src = start(cfg, Vec::new());
    assert_eq!(src.take(1).await.0, lines([1]));
    append(&path, &text([2]));
    assert_eq!(src.take(1).await.0, lines([2]));
    let second = dir.path().join("b.ndjson");
    append(&second, &text([3]));
    assert_eq!(src.take(1).await.0, lines([3]));
    src.stop().await;
}
