//! Hand-computed engine cases (`tests/cases/*.yaml`, rule files in
//! `tests/cases/rules/`): every expected alert list was worked out from the
//! spec text (`rule-language.md`), not copied from the binary. The whole set
//! runs through one `tocsin test` call, which must exit 0.
//!
//! Also checks the `tocsin test` contract itself (daemon.md section 6): a
//! wrong expectation exits 1 with a readable expected/actual diff, and a
//! malformed test file exits 2 naming the file and the line.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn tocsin_test(files: &[PathBuf], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .arg("test")
        .args(files)
        .current_dir(dir)
        .output()
        .expect("run tocsin test")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn every_hand_computed_case_passes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("tests/cases exists")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 40, "only {} cases found", files.len());
    let out = tocsin_test(&files, &root);
    assert_eq!(
        out.status.code(),
        Some(0),
        "tocsin test failed on tests/cases:\n{}",
        text(&out)
    );
}

const RULES: &str = "rule r {\n    from a\n}\n";

#[test]
fn wrong_expectation_exits_1_with_a_diff() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("r.rules"), RULES).unwrap();
    let case = dir.path().join("wrong.yaml");
    // One alert at 1s is produced; the test claims 2s.
    std::fs::write(
        &case,
        "rules: r.rules\n\
         max_delay: 0s\n\
         events:\n  - {type: a, ts: 1000}\n\
         expect:\n  - {rule: r, status: firing, time: \"1970-01-01T00:00:02Z\"}\n",
    )
    .unwrap();
    let out = tocsin_test(&[case], dir.path());
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "output:\n{all}");
    assert!(
        all.contains("- expected"),
        "no `- expected` line in:\n{all}"
    );
    assert!(all.contains("+ actual"), "no `+ actual` line in:\n{all}");
    assert!(all.contains("00:00:02"), "expected alert not shown:\n{all}");
    assert!(all.contains("00:00:01"), "actual alert not shown:\n{all}");
}

#[test]
fn right_expectation_in_a_temp_file_exits_0() {
    // The control for the test above: the same file with the right time passes.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("r.rules"), RULES).unwrap();
    let case = dir.path().join("right.yaml");
    std::fs::write(
        &case,
        "rules: r.rules\n\
         max_delay: 0s\n\
         events:\n  - {type: a, ts: 1000}\n\
         expect:\n  - {rule: r, status: firing, time: \"1970-01-01T00:00:01Z\"}\n",
    )
    .unwrap();
    let out = tocsin_test(&[case], dir.path());
    assert_eq!(out.status.code(), Some(0), "output:\n{}", text(&out));
}

#[test]
fn malformed_test_file_exits_2_naming_file_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("r.rules"), RULES).unwrap();
    let case = dir.path().join("malformed.yaml");
    // Line 3 holds a key the format does not have.
    std::fs::write(
        &case,
        "rules: r.rules\n\
         max_delay: 0s\n\
         expectations: []\n\
         events:\n  - {type: a, ts: 1000}\n\
         expect: []\n",
    )
    .unwrap();
    let out = tocsin_test(&[case], dir.path());
    let all = text(&out);
    assert_eq!(out.status.code(), Some(2), "output:\n{all}");
    assert!(all.contains("malformed.yaml"), "file not named in:\n{all}");
    assert!(
        all.contains("malformed.yaml:3:") || all.contains("line 3"),
        "line 3 not named in:\n{all}"
    );
    assert!(
        all.contains("expectations"),
        "unknown key not named in:\n{all}"
    );
}

/// Events of a test that are not events are skipped (as in `replay`) and
/// named with their line on every run, also when the test passes: a typo
/// in `ts` must not make a test that expects no alert pass unseen. Errors
/// found after the file is read (a bad `max_delay`, a missing
/// `events_file`, both or neither of `events` and `events_file`) name their
/// line and exit 2.
#[test]
fn skipped_events_and_late_errors_are_named_with_their_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("r.rules"), RULES).unwrap();
    std::fs::write(
        dir.path().join("bad.ndjson"),
        "{\"type\":\"zz\",\"ts\":1}\n{\"ts\":2}\n",
    )
    .unwrap();
    let cases = [
        (
            "rules: r.rules\nevents:\n  - {type: zz, ts: 1000}\n  - {type: a, ts: \"2026-01-01T00:00:00\"}\nexpect: []\n",
            0,
            "t.yaml:4: event 2 is not an event (bad_time), skipped",
        ),
        (
            "rules: r.rules\nevents_file: bad.ndjson\nexpect: []\n",
            0,
            "bad.ndjson:2: not an event (missing_type), skipped",
        ),
        (
            "rules: r.rules\nmax_delay: 5x\nevents: []\nexpect: []\n",
            2,
            "t.yaml:2: error: max_delay",
        ),
        (
            "rules: r.rules\nevents: []\nevents_file: bad.ndjson\nexpect: []\n",
            2,
            "t.yaml:3: error: give exactly one",
        ),
        (
            "rules: r.rules\nevents_file: missing.ndjson\nexpect: []\n",
            2,
            "t.yaml:2: error: events_file",
        ),
    ];
    for (yaml, code, want) in cases {
        let case = dir.path().join("t.yaml");
        std::fs::write(&case, yaml).unwrap();
        let out = tocsin_test(&[case], dir.path());
        let all = text(&out);
        assert_eq!(out.status.code(), Some(code), "{yaml}\n{all}");
        assert!(all.contains(want), "{yaml}: want `{want}` in:\n{all}");
    }
}

/// Event times outside years 0000-9999 UTC are rejected as `bad_time` and
/// counted like any other rejection (rule-language.md 0.4, 1, 9): before,
/// `ts` 2^63-1 was accepted and never evaluated (every later event late),
/// and an offset at the edge of 9999 printed `+010000-…` as the `time`.
#[test]
fn replay_rejects_times_outside_years_0000_to_9999() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("r.rules"), "rule f { from * }\n").unwrap();
    std::fs::write(
        dir.path().join("e.ndjson"),
        "{\"type\":\"a\",\"ts\":9223372036854775807}\n\
         {\"type\":\"a\",\"ts\":\"9999-12-31T23:59:59.999-01:00\"}\n\
         {\"type\":\"a\",\"ts\":1000}\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args(["replay", "--rules", "r.rules", "e.ndjson"])
        .current_dir(dir.path())
        .output()
        .expect("run tocsin replay");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        stderr.contains("e.ndjson:1: rejected: bad_time")
            && stderr.contains("e.ndjson:2: rejected: bad_time"),
        "{stderr}"
    );
    assert!(stderr.contains("2 rejected, 0 late, 1 alerts"), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    assert!(
        lines[0].contains("\"time\":\"1970-01-01T00:00:01.000Z\""),
        "{stdout}"
    );
}
