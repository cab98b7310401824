//! `tocsin test FILES...`: rule unit tests (daemon.md section 6). Each YAML
//! file names rules, gives events and lists the exact alerts expected, in
//! order. Exit 0 all pass, 1 any fails, 2 a malformed test file.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use serde::Deserialize;
use serde_json::Value;

use crate::alert::Alert;
use crate::decode::{DecodeConfig, Decoded, Decoder};
use crate::engine::expr::json_eq;
use crate::event::{json, time::parse_rfc3339};
use crate::lang::{self, Options};
use crate::pipeline::Pipeline;

#[derive(Debug, Args)]
pub struct TestArgs {
    /// Configuration file: its `events` settings apply and `notify` names are checked.
    #[arg(short, long)]
    pub config: Option<PathBuf>,
    /// Test files (YAML).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

/// One test file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    /// Rules location, relative to the test file.
    rules: PathBuf,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    max_delay: Option<String>,
    #[serde(default)]
    events: Option<Vec<serde_yaml_ng::Value>>,
    /// NDJSON file, relative to the test file.
    #[serde(default)]
    events_file: Option<PathBuf>,
    expect: Vec<serde_json::Map<String, Value>>,
}

enum Outcome {
    /// The alerts produced, and notes on events that were skipped.
    Pass(usize, String),
    Fail(String),
    Malformed(String),
}

pub fn run(args: TestArgs) -> ExitCode {
    let (decode_cfg, cfg_delay, channels) = match &args.config {
        None => (DecodeConfig::default(), None, None),
        Some(p) => match crate::config::Config::load(p) {
            Ok(c) => (
                c.events.decode_config(),
                Some(c.events.max_delay.0),
                Some(c.channel_names()),
            ),
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        },
    };
    let opts = Options { channels };
    let (mut passed, mut failed, mut malformed) = (0, 0, 0);
    for file in &args.files {
        match run_file(file, &decode_cfg, cfg_delay, &opts) {
            Outcome::Pass(n, notes) => {
                passed += 1;
                println!("PASS {} ({n} alerts)", file.display());
                print!("{notes}");
            }
            Outcome::Fail(diff) => {
                failed += 1;
                println!("FAIL {}\n{diff}", file.display());
            }
            Outcome::Malformed(msg) => {
                malformed += 1;
                println!("ERROR {msg}");
            }
        }
    }
    println!("{passed} passed, {failed} failed, {malformed} malformed");
    if malformed > 0 {
        ExitCode::from(2)
    } else if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn run_file(
    path: &Path,
    decode_cfg: &DecodeConfig,
    cfg_delay: Option<i64>,
    opts: &Options,
) -> Outcome {
    let name = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => return Outcome::Malformed(format!("{name}: cannot read: {e}")),
    };
    let tf: TestFile = match serde_yaml_ng::from_str(&text) {
        Ok(t) => t,
        Err(e) => {
            let pos = e
                .location()
                .map(|l| format!("{}:{}:", l.line(), l.column()))
                .unwrap_or_default();
            let msg = e.to_string();
            let msg = msg.split(" at line ").next().unwrap_or(&msg);
            return Outcome::Malformed(format!("{name}:{pos} error: {msg}"));
        }
    };
    let base = path.parent().unwrap_or(Path::new("."));
    // `name:line:` of a top-level key (errors found after parsing).
    let at = |key: &str| match key_line(&text, key) {
        Some(line) => format!("{name}:{line}:"),
        None => format!("{name}:"),
    };
    let max_delay = match &tf.max_delay {
        Some(d) => match lang::duration_ms(d) {
            Ok(ms) => ms,
            Err(e) => {
                return Outcome::Malformed(format!("{} error: max_delay: {e}", at("max_delay")));
            }
        },
        None => cfg_delay.unwrap_or(0),
    };
    let loaded = match lang::load(&base.join(&tf.rules), opts) {
        Ok(l) => l,
        Err(e) => return Outcome::Malformed(format!("{name}: rules: {e}")),
    };
    if loaded.has_errors() {
        return Outcome::Malformed(format!("{name}: invalid rules:\n{}", loaded.render()));
    }
    // Input texts: YAML events as compact JSON, members in the order written.
    let lines: Vec<String> = match (&tf.events, &tf.events_file) {
        (Some(evs), None) => evs
            .iter()
            .map(|v| {
                let mut out = String::new();
                yaml_compact(v, &mut out);
                out
            })
            .collect(),
        (None, Some(f)) => match std::fs::read_to_string(base.join(f)) {
            Ok(t) => t.lines().map(str::to_string).collect(),
            Err(e) => {
                return Outcome::Malformed(format!(
                    "{} error: events_file: {}: {e}",
                    at("events_file"),
                    base.join(f).display()
                ));
            }
        },
        (Some(_), Some(_)) => {
            return Outcome::Malformed(format!(
                "{} error: give exactly one of `events` and `events_file`, not both",
                at("events_file")
            ));
        }
        (None, None) => {
            return Outcome::Malformed(format!(
                "{name}:1: error: give `events` (a list) or `events_file` (an NDJSON file)"
            ));
        }
    };
    let decoder = Decoder::new(decode_cfg.clone());
    let mut pipeline = Pipeline::new(&loaded.program, max_delay);
    let mut alerts: Vec<Alert> = Vec::new();
    // An event that is not one (a time without a zone, a missing type) is
    // skipped, as `replay` skips it, and named with its line on every run,
    // passing or not: a test that expects no alert proves nothing if a
    // typo made its events vanish.
    let mut notes = String::new();
    for (i, line) in lines.iter().enumerate() {
        match decoder.decode(line.as_bytes(), None) {
            Decoded::Event(ev) => {
                let _ = pipeline.push(ev, &mut alerts);
            }
            Decoded::Blank => {}
            Decoded::Rejected(r) => {
                let (place, what) = match &tf.events_file {
                    Some(f) => (
                        format!("{}:{}", base.join(f).display(), i + 1),
                        "not an event".to_string(),
                    ),
                    None => (
                        item_line(&text, "events", i)
                            .map_or_else(|| name.clone(), |l| format!("{name}:{l}")),
                        format!("event {} is not an event", i + 1),
                    ),
                };
                let _ = writeln!(notes, "  note: {place}: {what} ({r}), skipped");
            }
        }
    }

    pipeline.finish(&mut alerts);
    let actual: Vec<Value> = alerts
        .iter()
        .filter_map(|a| serde_json::from_str(&a.to_json()).ok())
        .collect();
    let pass = actual.len() == tf.expect.len()
        && tf.expect.iter().zip(&actual).all(|(e, a)| matches(e, a));
    if pass {
        return Outcome::Pass(actual.len(), notes);
    }
    let _ = tf.name;
    Outcome::Fail(format!("{notes}{}", diff(&tf.expect, &actual)))
}

/// Whether `actual` has every field `expected` lists, with an equal value.
fn matches(expected: &serde_json::Map<String, Value>, actual: &Value) -> bool {
    expected.iter().all(|(k, want)| {
        let got = actual.get(k).unwrap_or(&Value::Null);
        field_eq(k, want, got)
    })
}

fn field_eq(field: &str, want: &Value, got: &Value) -> bool {
    match (field, want, got) {
        ("time", Value::String(w), Value::String(g)) => same_instant(w, g),
        ("window", Value::Object(w), Value::Object(g)) => {
            w.len() == g.len()
                && w.iter().all(|(k, wv)| match (wv, g.get(k)) {
                    (Value::String(a), Some(Value::String(b))) => same_instant(a, b),
                    (a, Some(b)) => json_eq(a, b),
                    _ => false,
                })
        }
        _ => json_eq(want, got),
    }
}

fn same_instant(a: &str, b: &str) -> bool {
    match (parse_rfc3339(a), parse_rfc3339(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// The expected and actual alert lists, each alert shown by the fields the
/// test lists (or the main ones), as a line diff.
fn diff(expected: &[serde_json::Map<String, Value>], actual: &[Value]) -> String {
    const MAIN: [&str; 4] = ["rule", "status", "key", "time"];
    let show = |v: &Value, fields: &[String]| -> String {
        let mut m = serde_json::Map::new();
        for f in fields {
            if let Some(x) = v.get(f) {
                m.insert(f.clone(), x.clone());
            }
        }
        json::compact(&Value::Object(m))
    };
    let exp_lines: Vec<String> = expected
        .iter()
        .map(|e| json::compact(&Value::Object(e.clone())))
        .collect();
    let act_lines: Vec<String> = actual
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let fields: Vec<String> = match expected.get(i) {
                Some(e) => e.keys().cloned().collect(),
                None => MAIN.iter().map(|s| s.to_string()).collect(),
            };
            // Show the actual alert in the expected one's terms when it matches.
            match expected.get(i) {
                Some(e) if matches(e, a) => json::compact(&Value::Object(e.clone())),
                _ => show(a, &fields),
            }
        })
        .collect();
    let exp_text = exp_lines.join("\n") + "\n";
    let act_text = act_lines.join("\n") + "\n";
    let d = similar::TextDiff::from_lines(&exp_text, &act_text);
    let mut out = format!(
        "  expected {} alert(s), got {}:\n",
        expected.len(),
        actual.len()
    );
    for change in d.iter_all_changes() {
        let sign = match change.tag() {
            similar::ChangeTag::Delete => "- expected ",
            similar::ChangeTag::Insert => "+ actual   ",
            similar::ChangeTag::Equal => "            ",
        };
        let _ = write!(out, "  {sign}{}", change);
    }
    out
}

/// A YAML value as compact JSON, mapping members in the order written (the
/// event's input text, which decides the order of ties).
fn yaml_compact(v: &serde_yaml_ng::Value, out: &mut String) {
    use serde_yaml_ng::Value as Y;
    match v {
        Y::Null => out.push_str("null"),
        Y::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                out.push_str(&i.to_string());
            } else if let Some(u) = n.as_u64() {
                out.push_str(&u.to_string());
            } else {
                json::write_number(out, n.as_f64().unwrap_or(f64::NAN));
            }
        }
        Y::String(s) => json::write_string(out, s),
        Y::Sequence(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                yaml_compact(item, out);
            }
            out.push(']');
        }
        Y::Mapping(m) => {
            out.push('{');
            for (i, (k, val)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                match k {
                    Y::String(s) => json::write_string(out, s),
                    other => {
                        let mut key = String::new();
                        yaml_compact(other, &mut key);
                        json::write_string(out, key.trim_matches('"'));
                    }
                }
                out.push(':');
                yaml_compact(val, out);
            }
            out.push('}');
        }
        Y::Tagged(t) => yaml_compact(&t.value, out),
    }
}

/// The line (1-based) of top-level key `key` in YAML `text`.
fn key_line(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            l.strip_prefix(key)
                .is_some_and(|r| r.trim_start().starts_with(':'))
        })
        .map(|i| i + 1)
}

/// The line of item `index` of the top-level list `key` in YAML `text`,
/// written one item per line (`- …` under the key); `None` otherwise (a
/// flow list `[…]`).
fn item_line(text: &str, key: &str, index: usize) -> Option<usize> {
    let start = key_line(text, key)?;
    let mut items = text
        .lines()
        .enumerate()
        .skip(start)
        .take_while(|(_, l)| l.is_empty() || l.starts_with([' ', '-', '#']))
        .filter(|(_, l)| {
            let t = l.trim_start();
            t.starts_with("- ") || t == "-"
        });
    let (first, line) = items.next()?;
    let indent = line.len() - line.trim_start().len();
    if index == 0 {
        return Some(first + 1);
    }
    items
        .filter(|(_, l)| l.len() - l.trim_start().len() == indent)
        .nth(index - 1)
        .map(|(i, _)| i + 1)
}
