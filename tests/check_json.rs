//! `tocsin check --format json` (daemon.md section 1, issue 9): every
//! diagnostic as one JSON array on stdout, for editors and CI. The binary is
//! run on two rule files holding several errors and a warning, and its
//! output is snapshotted under `tests/snapshots/`.
//!
//! Update after an intended change with
//! `INSTA_UPDATE=always cargo test --test check_json` and review the diff.

use std::process::Command;

/// Several kinds of error in two files, and one warning (a step name read
/// as an event field).
const AUTH: &str = r#"list admins = ["root", "admin"]

rule root_login {
    severity critcal
    from     auth where user in admin and outcome == "success"
}

rule brute_force {
    key user
    sequence within 5m {
        fail: auth where outcome == "failure" {3,}
        ok:   auth where outcome == "success" and fial.ip == ip
    }
}
"#;

const HTTP: &str = r#"rule slow_paths {
    from    http where path matches "/api/(v1"
    message "{{ event.path"
}

rule root_login {
    from http where lowr(method) == "delete"
}
"#;

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn check_json(files: &[(&str, &str)], args: &[&str]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join("rules").join(name), text).unwrap();
    }
    // Relative paths, so that the file names in the output are stable.
    let out = Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .current_dir(dir.path())
        .args(["check", "--format", "json"])
        .args(args)
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

#[test]
fn several_errors_and_a_warning() {
    let run = check_json(
        &[("10-auth.rules", AUTH), ("20-http.rules", HTTP)],
        &["rules"],
    );
    assert_eq!(run.code, Some(1), "stderr: {}", run.stderr);
    // One line of compact JSON: an array, one object per diagnostic.
    assert!(run.stdout.ends_with('\n') && run.stdout.trim_end().lines().count() == 1);
    let value: serde_json::Value = serde_json::from_str(&run.stdout).expect("valid JSON");
    let all = value.as_array().expect("an array");
    let keys = [
        "file",
        "line",
        "column",
        "end_line",
        "end_column",
        "severity",
        "message",
        "hint",
    ];
    for d in all {
        let obj = d.as_object().unwrap();
        assert_eq!(obj.keys().map(String::as_str).collect::<Vec<_>>(), keys);
        assert!(obj["file"].as_str().unwrap().starts_with("rules/"));
        assert!(obj["line"].as_u64().unwrap() >= 1 && obj["column"].as_u64().unwrap() >= 1);
        assert!(matches!(
            obj["severity"].as_str(),
            Some("error" | "warning")
        ));
        assert!(obj["hint"].is_null() || obj["hint"].is_string());
    }
    let count = |sev: &str| all.iter().filter(|d| d["severity"] == sev).count();
    assert!(count("error") >= 5, "{:#}", value);
    assert_eq!(count("warning"), 1, "{:#}", value);
    assert_eq!(
        run.stderr.trim_end(),
        format!("{} error(s), 1 warning(s)", count("error"))
    );
    // Pretty-printed in the snapshot for review; the keys keep their order.
    let description = format!("rules/10-auth.rules:\n{AUTH}\nrules/20-http.rules:\n{HTTP}");
    insta::with_settings!({ description => description, omit_expression => true }, {
        insta::assert_snapshot!(
            "check_json_several_errors_and_a_warning",
            serde_json::to_string_pretty(&value).unwrap()
        );
    });
}

#[test]
fn warnings_only_exit_zero_with_the_warning_in_json() {
    let text = "rule r {\n    sequence within 1m {\n        fail: auth\n        ok: auth where fial.ip == ip\n    }\n}\n";
    let run = check_json(&[("r.rules", text)], &["rules/r.rules"]);
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    let value: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(
        value,
        serde_json::json!([{
            "file": "rules/r.rules",
            "line": 4, "column": 24, "end_line": 4, "end_column": 28,
            "severity": "warning",
            "message": value[0]["message"],
            "hint": value[0]["hint"],
        }])
    );
    assert!(value[0]["message"].as_str().unwrap().contains("fial"));
    assert_eq!(run.stderr.trim_end(), "1 rule(s) OK, 1 warning(s)");
}

#[test]
fn valid_rules_give_an_empty_array() {
    let run = check_json(&[("ok.rules", "rule r {\n    from a\n}\n")], &["rules"]);
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    assert_eq!(run.stdout, "[]\n");
}
