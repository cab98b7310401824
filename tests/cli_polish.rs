//! Command-line polish of issue 9: shell completions and man pages
//! generated from the clap definition, and `tocsin replay`'s progress bar,
//! which is drawn on a terminal only.

use std::path::Path;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_tocsin");

const COMMANDS: [&str; 7] = [
    "run",
    "check",
    "replay",
    "test",
    "version",
    "completions",
    "manpage",
];

fn tocsin(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "off")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// Whether a program can be run here (for optional syntax checks).
fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

// ------------------------------------------------------------------ completions

#[test]
fn completions_mention_every_command_and_the_options() {
    for shell in ["bash", "zsh", "fish"] {
        let text = stdout(&tocsin(&["completions", shell]));
        for cmd in COMMANDS {
            assert!(text.contains(cmd), "{shell} completions lack `{cmd}`");
        }
        for opt in [
            "rules",
            "max-delay",
            "quiet",
            "format",
            "log-format",
            "config",
        ] {
            assert!(text.contains(opt), "{shell} completions lack `--{opt}`");
        }
        // Value enums are offered too.
        assert!(text.contains("json"), "{shell}: no `--format json`");
    }
}

#[test]
fn completion_scripts_parse() {
    for (shell, check) in [
        ("bash", &["-n"][..]),
        ("zsh", &["-n"][..]),
        ("fish", &["--no-execute"][..]),
    ] {
        if !have(shell) {
            eprintln!("{shell} is not installed: syntax of its completions not checked");
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(format!("tocsin.{shell}"));
        std::fs::write(&file, stdout(&tocsin(&["completions", shell]))).unwrap();
        let st = Command::new(shell).args(check).arg(&file).output().unwrap();
        assert!(
            st.status.success(),
            "{shell} rejects its completions: {}",
            String::from_utf8_lossy(&st.stderr)
        );
    }
}

/// Bash, with the script sourced, completes `tocsin re<TAB>` to `replay`
/// and `tocsin check --format <TAB>` to the formats.
#[test]
fn bash_completes_commands_and_values() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tocsin.bash");
    std::fs::write(&file, stdout(&tocsin(&["completions", "bash"]))).unwrap();
    let complete = |words: &[&str]| -> Vec<String> {
        let script = format!(
            "source {file}\nCOMP_WORDS=({words})\nCOMP_CWORD={cword}\nCOMP_LINE=\"{line}\"\nCOMP_POINT=${{#COMP_LINE}}\n\
             _tocsin tocsin \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
            file = file.display(),
            words = words
                .iter()
                .map(|w| format!("'{w}'"))
                .collect::<Vec<_>>()
                .join(" "),
            cword = words.len() - 1,
            line = words.join(" "),
        );
        let out = Command::new("bash").arg("-c").arg(script).output().unwrap();
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect()
    };
    assert_eq!(complete(&["tocsin", "rep"]), ["replay"]);
    let formats = complete(&["tocsin", "check", "--format", ""]);
    assert!(
        formats.contains(&"text".to_string()) && formats.contains(&"json".to_string()),
        "{formats:?}"
    );
    let all = complete(&["tocsin", ""]);
    for cmd in COMMANDS {
        assert!(
            all.contains(&cmd.to_string()),
            "`tocsin <TAB>` lacks {cmd}: {all:?}"
        );
    }
}

#[test]
fn completions_for_an_unknown_shell_are_a_usage_error() {
    let out = tocsin(&["completions", "cmd.exe"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bash"));
}

// ------------------------------------------------------------------ man page

/// Renders roff with groff, warnings on; `None` when groff is not here.
fn groff(roff: &[u8]) -> Option<String> {
    if !have("groff") {
        eprintln!("groff is not installed: man page rendering not checked");
        return None;
    }
    let mut child = Command::new("groff")
        .args(["-man", "-Tutf8", "-ww"])
        .env("GROFF_NO_SGR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(roff).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "groff: {stderr}"
    );
    // Drop overstrike bold/underline, should groff use it.
    let text = String::from_utf8(out.stdout).unwrap();
    let mut plain = String::new();
    for c in text.chars() {
        if c == '\u{8}' {
            plain.pop();
        } else {
            plain.push(c);
        }
    }
    Some(plain)
}

#[test]
fn the_man_page_is_roff_and_renders() {
    let out = tocsin(&["manpage"]);
    let roff = stdout(&out);
    assert!(roff.contains(".TH tocsin 1"), "{roff}");
    for section in [
        "NAME",
        "SYNOPSIS",
        "DESCRIPTION",
        "OPTIONS",
        "SUBCOMMANDS",
        "\"EXIT STATUS\"",
        "FILES",
    ] {
        assert!(
            roff.contains(&format!(".SH {section}")),
            "no {section} section"
        );
    }
    for cmd in COMMANDS {
        assert!(
            roff.contains(&format!("tocsin\\-{cmd}(1)")),
            "no {cmd} in SUBCOMMANDS"
        );
    }
    // clap's `help` command gets no page, so none is pointed to.
    assert!(!roff.contains("tocsin\\-help(1)"), "{roff}");
    assert!(roff.contains(env!("CARGO_PKG_VERSION")));
    if let Some(text) = groff(roff.as_bytes()) {
        for needle in [
            "NAME",
            "tocsin - Complex-event-processing rules daemon",
            "SYNOPSIS",
            "--log-format",
            "EXIT STATUS",
            "/etc/tocsin/tocsin.yaml",
            "tocsin-replay(1)",
        ] {
            assert!(
                text.contains(needle),
                "rendered page lacks {needle:?}:\n{text}"
            );
        }
    }
}

#[test]
fn manpage_dir_writes_a_page_per_command() {
    let dir = tempfile::tempdir().unwrap();
    let out = tocsin(&["manpage", "--dir", dir.path().to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let main = std::fs::read(dir.path().join("tocsin.1")).unwrap();
    // The same page as on stdout.
    assert_eq!(main, tocsin(&["manpage"]).stdout);
    for cmd in COMMANDS {
        let page = dir.path().join(format!("tocsin-{cmd}.1"));
        let roff = std::fs::read(&page).unwrap_or_else(|_| panic!("no {}", page.display()));
        if let Some(text) = groff(&roff) {
            assert!(text.contains(&format!("tocsin-{cmd}")), "{text}");
        }
    }
    let replay =
        String::from_utf8(std::fs::read(dir.path().join("tocsin-replay.1")).unwrap()).unwrap();
    assert!(
        replay.contains("\\-\\-max\\-delay") && replay.contains("\\-\\-quiet"),
        "{replay}"
    );
}

// ------------------------------------------------------------------ replay progress

/// A rule that fires on failed logins, and `n` events, a third of them
/// failures, plus one line that is not JSON.
fn replay_inputs(dir: &Path, n: usize) -> (String, String) {
    let rules = dir.join("r.rules");
    std::fs::write(
        &rules,
        "rule r {\n    from auth where outcome == \"failure\"\n}\n",
    )
    .unwrap();
    let events = dir.join("events.ndjson");
    let mut text = String::new();
    for i in 0..n {
        let outcome = if i % 3 == 0 { "failure" } else { "success" };
        text.push_str(&format!(
            "{{\"type\":\"auth\",\"ts\":{},\"user\":\"u{}\",\"outcome\":\"{outcome}\"}}\n",
            1_700_000_000_000u64 + i as u64 * 10,
            i % 7
        ));
    }
    text.push_str("not json\n");
    std::fs::write(&events, text).unwrap();
    (
        rules.to_str().unwrap().to_string(),
        events.to_str().unwrap().to_string(),
    )
}

#[test]
fn replay_on_a_pipe_prints_no_progress() {
    let dir = tempfile::tempdir().unwrap();
    let (rules, events) = replay_inputs(dir.path(), 3000);
    let out = tocsin(&["replay", "--rules", &rules, &events]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1000);
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        format!(
            "{events}:3001: rejected: invalid_json\n\
             replay: 3000 events read, 1 rejected, 0 late, 1000 alerts\n"
        )
    );
    // And with `--quiet`, only the rejected line.
    let out = tocsin(&["replay", "--quiet", "--rules", &rules, &events]);
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        format!("{events}:3001: rejected: invalid_json\n")
    );
}

/// Several inputs are read in order on the decoding thread: line numbers
/// are per file, alerts keep their order, and an input that cannot be
/// opened stops the replay with exit 1 after what came before it.
#[test]
fn replay_reads_inputs_in_order_and_reports_a_missing_one() {
    let dir = tempfile::tempdir().unwrap();
    let (rules, events) = replay_inputs(dir.path(), 3000);
    let one = tocsin(&["replay", "--quiet", "--rules", &rules, &events]);
    let two = tocsin(&["replay", "--rules", &rules, &events, &events]);
    assert!(two.status.success());
    // The second copy is older than the end of the first: with max-delay 0
    // its events are late, all but the last (at the watermark itself), which
    // matches nothing new; so the alerts are the first copy's.
    assert_eq!(two.stdout, one.stdout);
    assert_eq!(
        String::from_utf8(two.stderr).unwrap(),
        format!(
            "{events}:3001: rejected: invalid_json\n\
             {events}:3001: rejected: invalid_json\n\
             replay: 6000 events read, 2 rejected, 2999 late, 1000 alerts\n"
        )
    );
    let missing = dir.path().join("missing.ndjson");
    let missing = missing.to_str().unwrap();
    let out = tocsin(&["replay", "--rules", &rules, &events, missing]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(out.stdout, one.stdout);
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains(&format!("cannot open {missing}")), "{err}");
}

/// Runs `sh -c CMD` with a pseudo-terminal (util-linux `script`) and returns
/// what was written to it; `None` when `script` is not here.
fn in_a_terminal(cmd: &str) -> Option<String> {
    let probe = Command::new("script").arg("--version").output();
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!("util-linux `script` is not installed: progress on a terminal not checked");
        return None;
    }
    let out = Command::new("script")
        .args(["-qec", cmd, "/dev/null"])
        .env("RUST_LOG", "off")
        .env("TERM", "xterm-256color")
        .env("COLUMNS", "100")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{cmd}: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[test]
fn replay_on_a_terminal_shows_progress_then_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    let (rules, events) = replay_inputs(dir.path(), 3000);
    let alerts = dir.path().join("alerts.ndjson");
    let alerts_s = alerts.to_str().unwrap();
    // stderr on the terminal, stdout to a file: the alerts are unchanged.
    let cmd = format!(
        "{} replay --rules {} {} > {}",
        quote(BIN),
        quote(&rules),
        quote(&events),
        quote(alerts_s)
    );
    let Some(term) = in_a_terminal(&cmd) else {
        return;
    };
    assert_eq!(
        std::fs::read_to_string(&alerts).unwrap().lines().count(),
        1000
    );
    // A file of known size: bytes of the total, events, rate, alerts, ETA.
    assert!(term.contains("KiB/"), "{term:?}");
    assert!(term.contains("3,000 events ("), "{term:?}");
    assert!(term.contains("/s)"), "{term:?}");
    assert!(term.contains("1,000 alerts"), "{term:?}");
    assert!(term.contains("ETA"), "{term:?}");
    // The bar is cleared; the rejected line and the summary are whole lines.
    assert!(term.contains("rejected: invalid_json"), "{term:?}");
    assert!(
        term.trim_end()
            .ends_with("replay: 3000 events read, 1 rejected, 0 late, 1000 alerts"),
        "{term:?}"
    );

    // From a pipe the size is unknown: counts, no ETA.
    let cmd = format!(
        "cat {} | {} replay --rules {} > {}",
        quote(&events),
        quote(BIN),
        quote(&rules),
        quote(alerts_s)
    );
    let term = in_a_terminal(&cmd).unwrap();
    assert!(term.contains("KiB read"), "{term:?}");
    assert!(term.contains("3,000 events ("), "{term:?}");
    assert!(!term.contains("ETA"), "{term:?}");

    // `--quiet`: nothing but the rejected line.
    let cmd = format!(
        "{} replay --quiet --rules {} {} > {}",
        quote(BIN),
        quote(&rules),
        quote(&events),
        quote(alerts_s)
    );
    let term = in_a_terminal(&cmd).unwrap();
    assert_eq!(
        term.trim_end(),
        format!("{events}:3001: rejected: invalid_json")
    );
}
