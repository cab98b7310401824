//! Data-driven load-error examples: every `tests/conformance/diag/*.rules`
//! with its `.expect` (a copy of the shared conformance examples; their
//! README is the contract):
//!
//! * `.expect` is `ok`: `tocsin check FILE` exits 0 (warnings allowed);
//! * else one line per expected error, `LINE:COL` or `LINE`, optionally
//!   followed by a word: the exit status is 1 and stdout holds
//!   `FILE:LINE:COL: error` (or `FILE:LINE:` on an error line) for every
//!   line, and the word.
//!
//! The binary runs with the working directory set to the examples folder,
//! so the file names in its output are the bare `NNN-name.rules`. Every
//! failing example is printed before the test fails.

use std::path::{Path, PathBuf};
use std::process::Command;

/// One expected error: 1-based line, optional column, optional word.
#[derive(Debug, PartialEq)]
struct Expected {
    line: usize,
    col: Option<usize>,
    word: Option<String>,
}

/// `None` for `ok`, else the expected errors.
fn parse_expect(text: &str) -> Result<Option<Vec<Expected>>, String> {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if lines == ["ok"] {
        return Ok(None);
    }
    if lines.is_empty() {
        return Err("empty .expect file".into());
    }
    let mut out = Vec::new();
    for l in lines {
        let (pos, word) = match l.split_once(char::is_whitespace) {
            Some((p, w)) => (p, Some(w.trim().to_string())),
            None => (l, None),
        };
        let (line, col) = match pos.split_once(':') {
            Some((a, b)) => (a, Some(b)),
            None => (pos, None),
        };
        let line: usize = line
            .parse()
            .map_err(|_| format!("bad line number in `{l}`"))?;
        let col = col
            .map(|c| c.parse::<usize>())
            .transpose()
            .map_err(|_| format!("bad column in `{l}`"))?;
        out.push(Expected { line, col, word });
    }
    Ok(Some(out))
}

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/diag")
}

/// What is wrong with one example; empty when it passes.
fn check_example(dir: &Path, file: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let expect_path = dir.join(file).with_extension("expect");
    let expected = match std::fs::read_to_string(&expect_path)
        .map_err(|e| format!("cannot read {}: {e}", expect_path.display()))
        .and_then(|t| parse_expect(&t))
    {
        Ok(e) => e,
        Err(e) => return vec![e],
    };
    let out = Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .arg("check")
        .arg(file)
        .current_dir(dir)
        .output()
        .expect("run tocsin check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let code = out.status.code();
    match expected {
        None => {
            if code != Some(0) {
                problems.push(format!("expected exit status 0, got {code:?}"));
            }
        }
        Some(errors) => {
            if code != Some(1) {
                problems.push(format!("expected exit status 1, got {code:?}"));
            }
            for e in &errors {
                let found = match e.col {
                    Some(col) => {
                        let want = format!("{file}:{}:{col}: error", e.line);
                        stdout.lines().any(|l| l.starts_with(&want))
                    }
                    None => {
                        let want = format!("{file}:{}:", e.line);
                        stdout
                            .lines()
                            .any(|l| l.starts_with(&want) && l.contains(": error: "))
                    }
                };
                if !found {
                    let at = match e.col {
                        Some(c) => format!("{}:{c}", e.line),
                        None => e.line.to_string(),
                    };
                    problems.push(format!("no error reported at {at}"));
                }
                if let Some(w) = &e.word
                    && !stdout.contains(w.as_str())
                {
                    problems.push(format!("the word `{w}` is not in the output"));
                }
            }
        }
    }
    if !problems.is_empty() {
        problems.push(format!(
            "stdout:\n{stdout}stderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    problems
}

#[test]
fn conformance_diag_examples() {
    let dir = examples_dir();
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .expect("tests/conformance/diag exists")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".rules"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no examples in {}", dir.display());

    let mut failures = Vec::new();
    for file in &files {
        let problems = check_example(&dir, file);
        if !problems.is_empty() {
            failures.push(format!("=== {file}\n{}", problems.join("\n")));
        }
    }
    if !failures.is_empty() {
        eprintln!("{}", failures.join("\n\n"));
        panic!(
            "{} of {} conformance diag examples failed (see above)",
            failures.len(),
            files.len()
        );
    }
}

#[test]
fn every_expect_file_has_its_rules_file() {
    let dir = examples_dir();
    for e in std::fs::read_dir(&dir).unwrap().filter_map(Result::ok) {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "expect") {
            assert!(
                p.with_extension("rules").is_file(),
                "{} has no .rules file",
                p.display()
            );
        }
    }
}

#[test]
fn expect_format() {
    assert_eq!(parse_expect("ok\n"), Ok(None));
    assert_eq!(
        parse_expect("3:1 expected\n7 twice_named\n5:9\n12\n"),
        Ok(Some(vec![
            Expected {
                line: 3,
                col: Some(1),
                word: Some("expected".into())
            },
            Expected {
                line: 7,
                col: None,
                word: Some("twice_named".into())
            },
            Expected {
                line: 5,
                col: Some(9),
                word: None
            },
            Expected {
                line: 12,
                col: None,
                word: None
            },
        ]))
    );
    assert!(parse_expect("").is_err());
    assert!(parse_expect("x:1").is_err());
}
