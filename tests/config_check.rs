//! `tocsin check -c FILE` refuses every configuration that `tocsin run`
//! refuses at start for what the file says (daemon.md sections 1 and 2), with
//! the same `FILE:LINE:COL: error: ...` message pointing at the key or value
//! at fault; unknown and missing keys are worded as such.
//!
//! Secrets (`*_env` naming an unset variable, an unreadable `*_file`) are
//! left to `run`: they depend on the machine the daemon runs on.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_tocsin");

/// Every config below starts with this: one rule notifying `ops`, a
/// scratch state directory and an admin API on a free port, so that a
/// `run` that wrongly starts binds nothing that matters.
const HEAD: &str = "rules: r.rules\nstate_dir: state\n";
const ADMIN: &str = "admin:\n  listen: 127.0.0.1:0\n";
const OPS: &str = "channels:\n  ops:\n    kind: stdout\n";

fn setup(config: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("r.rules"),
        "rule a {\n    from auth\n    notify ops\n}\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("c.yaml"), config).unwrap();
    dir
}

fn check(dir: &Path) -> Output {
    Command::new(BIN)
        .current_dir(dir)
        .args(["check", "-c", "c.yaml"])
        .env("RUST_LOG", "off")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// `tocsin run -c c.yaml`, stopped after 10 s if it did start.
fn run(dir: &Path) -> (Option<i32>, String) {
    let mut child = Command::new(BIN)
        .current_dir(dir)
        .args(["run", "-c", "c.yaml"])
        .env("RUST_LOG", "off")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            return (
                status.code(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            );
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            let _ = child.wait();
            return (None, "still running after 10 s".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Each case: the config after HEAD, the expected `c.yaml:LINE:COL:`
/// position (`c.yaml:` alone for a check across keys) and a part of the
/// message.
const REFUSED: &[(&str, &str, &str)] = &[
    (
        "durability:\n  fsync: sometimes\n",
        "c.yaml:4:10:",
        "unknown policy `sometimes`",
    ),
    (
        "channels:\n  ops:\n    kind: webhook\n    url: http://127.0.0.1:1/\n    format: xml\n",
        "c.yaml:7:13:",
        "unknown value `xml`",
    ),
    (
        "channels:\n  ops:\n    kind: email\n    smtp: localhost\n    tls: bogus\n    from: a@example.com\n    to: [b@example.com]\n",
        "c.yaml:7:10:",
        "unknown value `bogus`",
    ),
    (
        "channels:\n  ops:\n    kind: email\n    smtp: smtp.example.com:25\n    tls: none\n    from: a@example.com\n    to: [b@example.com]\n",
        "c.yaml:",
        "channel `ops`: tls: none is allowed only for a loopback SMTP host",
    ),
    (
        "sources:\n  - kind: http\n    listen: notanaddr\n",
        "c.yaml:5:13:",
        "invalid listen address `notanaddr`",
    ),
    (
        "sources:\n  - kind: file\n    path: in.ndjson\n    start_at: middle\n",
        "c.yaml:6:15:",
        "`middle`",
    ),
    (
        "sources:\n  - kind: http\n    listen: 127.0.0.1:0\n    bogus: 1\n",
        "c.yaml:6:5:",
        "unknown key `bogus`",
    ),
    (
        "channels:\n  ops:\n    kind: webhook\n    url: http://127.0.0.1:1/\n    sekret_env: A\n",
        "c.yaml:7:5:",
        "unknown key `sekret_env`",
    ),
    ("foo: 1\n", "c.yaml:3:1:", "unknown key `foo`"),
];

#[test]
fn check_refuses_what_run_refuses_with_the_same_message() {
    for (body, at, want) in REFUSED {
        let mut text = format!("{HEAD}{body}");
        if !body.contains("channels:") {
            text.push_str(OPS);
        }
        if !body.contains("admin:") {
            text.push_str(ADMIN);
        }
        let dir = setup(&text);
        let out = check(dir.path());
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(1),
            "check accepted:\n{text}\nstdout: {stdout}"
        );
        let line = stdout.lines().next().unwrap_or_default();
        assert!(
            line.starts_with(&format!("{at} error: ")) && line.contains(want),
            "config:\n{text}\ncheck said: {stdout}\nwanted `{at} error: ...{want}...`"
        );
        let (code, stderr) = run(dir.path());
        assert_eq!(code, Some(1), "run on:\n{text}\n{stderr}");
        assert!(
            stderr.contains(line),
            "run said {stderr}, check said {line}"
        );
    }
}

#[test]
fn a_missing_rules_key_is_named_as_missing() {
    let dir = setup(&format!("state_dir: state\n{OPS}"));
    let out = check(dir.path());
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("c.yaml:1:1: error: missing key `rules`"),
        "{stdout}"
    );
}

/// `start_at: beginning` and `end` are accepted, and so is a full config
/// of valid values (none of which `check` should refuse).
#[test]
fn check_accepts_valid_values() {
    let dir = setup(&format!(
        "{HEAD}{ADMIN}durability:\n  fsync: interval\nsources:\n  - kind: file\n    path: a.ndjson\n    start_at: beginning\n  - kind: file\n    path: b.ndjson\n    start_at: end\n  - kind: http\n    listen: localhost:0\n  - kind: tcp\n    listen: \"[::1]:0\"\nchannels:\n  ops:\n    kind: webhook\n    url: https://example.com/hook\n    format: alertmanager\n    secret_env: TOCSIN_TEST_SURELY_UNSET\n  mail:\n    kind: email\n    smtp: 127.0.0.1:2525\n    tls: none\n    from: a@example.com\n    to: [b@example.com]\n"
    ));
    let out = check(dir.path());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Rules that cannot be read are invalid input (1), as in `replay`, not a
/// usage error (2), whether named on the command line or by the config;
/// the other locations are still checked, so one run reports every error.
#[test]
fn unreadable_rules_are_invalid_not_a_usage_error() {
    let dir = setup(&format!(
        "rules: nowhere.rules\nstate_dir: state\n{ADMIN}{OPS}"
    ));
    std::fs::write(dir.path().join("bad.rules"), "rule b { from x where }\n").unwrap();
    for (args, also) in [
        (
            &["check", "missing.rules", "bad.rules"][..],
            Some("bad.rules:1:"),
        ),
        (&["check", "-c", "c.yaml"], None),
    ] {
        let out = Command::new(BIN)
            .current_dir(dir.path())
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(all.contains("cannot read rules"), "{args:?}: {all}");
        if let Some(also) = also {
            assert!(all.contains(also), "{args:?}: {all}");
        }
    }
}
