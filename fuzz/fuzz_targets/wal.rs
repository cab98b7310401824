//! Arbitrary bytes as a write-ahead log segment: recovery cuts what it
//! cannot read and never panics; decoded records re-encode to the same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tocsin::wal::{FsyncPolicy, Record, Wal};

fuzz_target!(|data: &[u8]| {
    if let Some(rec) = Record::decode(data) {
        let mut again = Vec::new();
        rec.encode(&mut again);
        assert_eq!(again, data);
    }
    let Ok(dir) = tempfile_dir() else { return };
    let wal = dir.join("wal");
    if std::fs::create_dir_all(&wal).is_err() {
        return;
    }
    let _ = std::fs::write(wal.join("00000000000000000001.log"), data);
    let _ = Wal::open(&dir, FsyncPolicy::Off, 0);
    let _ = std::fs::remove_dir_all(&dir);
});

fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    let d = std::env::temp_dir().join(format!("tocsin-fuzz-wal-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d)?;
    Ok(d)
}
