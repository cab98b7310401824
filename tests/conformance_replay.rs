//! The worked examples of the contract (`tests/conformance/cases/*`, copied
//! from the spec's conformance examples): `tocsin replay` must print exactly
//! the expected alerts, in order. Only the fields an expected alert lists are
//! compared; numbers by value, times as exact text.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

fn run_case(dir: &Path, threads: u32) -> Result<(), String> {
    let args = std::fs::read_to_string(dir.join("args")).unwrap_or_default();
    let out = Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .arg("replay")
        .args(["--rules", "rules.rules"])
        .arg(format!("--threads={threads}"))
        .args(args.split_whitespace())
        .arg("events.ndjson")
        .current_dir(dir)
        .output()
        .map_err(|e| format!("cannot run tocsin: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "exit {:?}: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let expected: Vec<Value> = std::fs::read_to_string(dir.join("expected.ndjson"))
        .map_err(|e| e.to_string())?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(|e| format!("expected.ndjson: {e}")))
        .collect::<Result<_, _>>()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let actual: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).map_err(|e| format!("stdout is not NDJSON ({e}): {l}")))
        .collect::<Result<_, _>>()?;
    let same = expected.len() == actual.len()
        && expected.iter().zip(&actual).all(|(e, a)| {
            e.as_object().is_some_and(|e| {
                e.iter()
                    .all(|(k, v)| a.get(k).is_some_and(|g| json_eq(v, g)))
            })
        });
    if same {
        Ok(())
    } else {
        Err(format!(
            "expected:\n{}\nactual:\n{}",
            expected
                .iter()
                .map(|v| format!("  {v}\n"))
                .collect::<String>(),
            actual
                .iter()
                .map(|v| format!("  {v}\n"))
                .collect::<String>()
        ))
    }
}

#[test]
fn every_conformance_case_replays_to_its_expected_alerts() {
    check_cases(1);
}

/// The same with the rules shared out among threads (`--threads`).
#[test]
fn every_conformance_case_replays_the_same_on_threads() {
    check_cases(3);
}

fn check_cases(threads: u32) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/cases");
    let mut cases: Vec<_> = std::fs::read_dir(&root)
        .expect("tests/conformance/cases exists")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(cases.len() >= 57, "only {} cases found", cases.len());
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|c| {
            run_case(c, threads).err().map(|e| {
                format!(
                    "{}: {e}",
                    c.file_name().unwrap_or_default().to_string_lossy()
                )
            })
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
