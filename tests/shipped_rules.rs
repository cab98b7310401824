//! The shipped rules (`rules/*.rules`) and their unit tests
//! (`tests/rules/*.yaml`, `tocsin test` files, daemon.md section 6).
//!
//! * every `tests/rules/*.yaml` passes under `tocsin test` (exit 0);
//! * every `rule NAME` declared in `rules/*.rules` is named by at least one
//!   expected alert of some `tests/rules/*.yaml`, so a new shipped rule
//!   without a test fails here;
//! * every rules file is the `rules:` of at least one test, and at least one
//!   of those expects no alert at all (a near miss);
//! * `tocsin check rules/` exits 0 and prints no warning.
//!
//! The expectations in `tests/rules/` were worked out by hand from the spec
//! (`rule-language.md`); each file's header comment gives the reasoning.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_yaml_ng::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn files_with_ext(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    files.sort();
    files
}

fn tocsin(args: &[&std::ffi::OsStr], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run tocsin")
}

fn text(out: &Output) -> String {
    format!(
        "--- stdout\n{}--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Names declared by `rule NAME {` at the top level of a rules file: a small
/// scanner that skips `#` comments and string literals (a message may well
/// contain the word `rule`) and tracks brace depth.
fn declared_rules(src: &str) -> Vec<String> {
    let mut depth = 0usize;
    let mut chars = src.chars().peekable();
    // Tokens at depth 0, in order: identifiers and `{`.
    let mut tokens: Vec<String> = Vec::new();
    while let Some(c) = chars.next() {
        match c {
            '#' => {
                for n in chars.by_ref() {
                    if n == '\n' {
                        break;
                    }
                }
            }
            '"' => {
                while let Some(n) = chars.next() {
                    match n {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
                if depth == 0 {
                    tokens.push("\"".into());
                }
            }
            '`' => {
                for n in chars.by_ref() {
                    if n == '`' {
                        break;
                    }
                }
            }
            '{' => {
                if depth == 0 {
                    tokens.push("{".into());
                }
                depth += 1;
            }
            '}' => depth = depth.saturating_sub(1),
            c if c.is_alphabetic() || c == '_' => {
                let mut w = String::from(c);
                while let Some(&n) = chars.peek() {
                    if n.is_alphanumeric() || n == '_' {
                        w.push(n);
                        chars.next();
                    } else {
                        break;
                    }
                }
                if depth == 0 {
                    tokens.push(w);
                }
            }
            _ => {}
        }
    }
    tokens
        .windows(3)
        .filter(|w| w[0] == "rule" && w[2] == "{")
        .map(|w| w[1].clone())
        .collect()
}

#[test]
fn declared_rules_scanner() {
    let src = "# rule commented { }\nlist a = [\"rule x {\"]\nrule one {\n from a\n message \"rule two { }\"\n}\nrule  two_b\n{ from b }\n";
    assert_eq!(declared_rules(src), vec!["one", "two_b"]);
}

struct TestFile {
    path: PathBuf,
    /// The `rules:` location, resolved against the test file's folder.
    rules: PathBuf,
    /// The `rule` of every expected alert.
    expected_rules: Vec<String>,
}

fn load_tests() -> Vec<TestFile> {
    let dir = root().join("tests/rules");
    let files = files_with_ext(&dir, "yaml");
    assert!(!files.is_empty(), "no tests in {}", dir.display());
    files
        .into_iter()
        .map(|path| {
            let src = std::fs::read_to_string(&path).unwrap();
            let doc: Value =
                serde_yaml_ng::from_str(&src).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let rules = doc
                .get("rules")
                .and_then(Value::as_str)
                .unwrap_or_else(|| panic!("{}: no `rules:`", path.display()));
            let rules = std::fs::canonicalize(dir.join(rules))
                .unwrap_or_else(|e| panic!("{}: rules {rules}: {e}", path.display()));
            let expect = doc
                .get("expect")
                .and_then(Value::as_sequence)
                .unwrap_or_else(|| panic!("{}: no `expect:` list", path.display()));
            let expected_rules = expect
                .iter()
                .map(|a| {
                    a.get("rule")
                        .and_then(Value::as_str)
                        .unwrap_or_else(|| {
                            panic!("{}: an expected alert without `rule`", path.display())
                        })
                        .to_string()
                })
                .collect();
            TestFile {
                path,
                rules,
                expected_rules,
            }
        })
        .collect()
}

#[test]
fn every_rule_test_passes() {
    let dir = root().join("tests/rules");
    let files = files_with_ext(&dir, "yaml");
    assert!(!files.is_empty(), "no tests in {}", dir.display());
    let mut args: Vec<&std::ffi::OsStr> = vec!["test".as_ref()];
    args.extend(files.iter().map(|p| p.as_os_str()));
    let out = tocsin(&args, &dir);
    assert_eq!(
        out.status.code(),
        Some(0),
        "tocsin test failed on tests/rules:\n{}",
        text(&out)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary = format!("{} passed, 0 failed, 0 malformed", files.len());
    assert!(
        stdout.contains(&summary),
        "expected `{summary}`:\n{}",
        text(&out)
    );
}

#[test]
fn every_shipped_rule_is_tested() {
    let tests = load_tests();
    let tested: BTreeSet<&str> = tests
        .iter()
        .flat_map(|t| t.expected_rules.iter().map(String::as_str))
        .collect();
    let mut untested = Vec::new();
    let mut declared = 0;
    for file in files_with_ext(&root().join("rules"), "rules") {
        let src = std::fs::read_to_string(&file).unwrap();
        for name in declared_rules(&src) {
            declared += 1;
            if !tested.contains(name.as_str()) {
                untested.push(format!("{}: rule `{name}`", file.display()));
            }
        }
    }
    assert!(declared > 0, "no rule found in rules/");
    assert!(
        untested.is_empty(),
        "shipped rules that no expected alert of tests/rules/*.yaml names \
         (add a test that makes them fire):\n{}",
        untested.join("\n")
    );
}

#[test]
fn every_rules_file_has_tests_and_a_near_miss() {
    let tests = load_tests();
    // rules file -> (number of tests, number expecting no alert)
    let mut by_file: BTreeMap<PathBuf, (usize, usize)> = BTreeMap::new();
    for t in &tests {
        let e = by_file.entry(t.rules.clone()).or_default();
        e.0 += 1;
        if t.expected_rules.is_empty() {
            e.1 += 1;
        }
    }
    let mut problems = Vec::new();
    for file in files_with_ext(&root().join("rules"), "rules") {
        let canon = std::fs::canonicalize(&file).unwrap();
        match by_file.get(&canon) {
            None => problems.push(format!("{}: no test uses it", file.display())),
            Some((_, 0)) => problems.push(format!(
                "{}: no test expects no alert (add a near miss)",
                file.display()
            )),
            Some(_) => {}
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // Every test names a file under rules/ (not some private copy).
    let shipped = std::fs::canonicalize(root().join("rules")).unwrap();
    for t in &tests {
        assert!(
            t.rules.starts_with(&shipped),
            "{}: `rules:` should point into rules/, not {}",
            t.path.display(),
            t.rules.display()
        );
    }
}

#[test]
fn shipped_rules_check_clean() {
    let out = tocsin(&["check".as_ref(), "rules/".as_ref()], &root());
    assert_eq!(
        out.status.code(),
        Some(0),
        "tocsin check rules/ failed:\n{}",
        text(&out)
    );
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Diagnostics read `FILE:LINE:COL: warning: ...`; the summary line may
    // say `N warning(s)`, which is fine only for N = 0.
    let warnings: Vec<&str> = all
        .lines()
        .filter(|l| {
            l.contains("warning:")
                || (l.contains("warning(s)")
                    && !l.contains(" 0 warning(s)")
                    && !l.starts_with("0 warning(s)"))
        })
        .collect();
    assert!(
        warnings.is_empty(),
        "tocsin check rules/ printed warnings:\n{}",
        text(&out)
    );
}
