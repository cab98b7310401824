//! The layer rules of docs/ARCHITECTURE.md, checked on the source text: the
//! deterministic core (engine, sequencer, alert stage, pipeline, decode,
//! rules front end) uses no tokio, no clock, no I/O layer, no locks.

use std::path::Path;

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).expect("readable src dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn the_deterministic_core_has_no_clock_io_or_async() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let core = [
        "engine",
        "sequencer.rs",
        "alert",
        "pipeline.rs",
        "decode.rs",
        "lang",
    ];
    let forbidden = [
        "tokio",
        "SystemTime::now",
        "Instant::now",
        "crate::daemon",
        "crate::source",
        "crate::outbox",
        "crate::channel",
        "crate::wal",
        "Mutex",
        "RwLock",
        "DashMap",
    ];
    let mut files = Vec::new();
    for c in core {
        let p = root.join(c);
        if p.is_dir() {
            sources(&p, &mut files);
        } else {
            files.push(p);
        }
    }
    assert!(files.len() > 15, "core files found: {}", files.len());
    let mut problems = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).expect("readable source");
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for word in forbidden {
                if code.contains(word) {
                    problems.push(format!("{}:{}: uses `{word}`", f.display(), n + 1));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "layer violations:\n{}",
        problems.join("\n")
    );
}

#[test]
fn main_stays_thin() {
    let main = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/main.rs"))
        .expect("main.rs");
    assert!(
        main.lines().count() <= 40,
        "src/main.rs has grown past 40 lines"
    );
}
