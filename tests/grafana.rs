//! `packaging/grafana/tocsin.json` (issue 9): the dashboard loads as JSON,
//! and every PromQL expression in it (panel targets, annotations, variable
//! queries) names only metrics that the daemon exports, with labels those
//! metrics carry. The exported names come from the daemon's own
//! `Metrics::new().encode()`, so a renamed metric breaks this test rather
//! than a dashboard in production.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use tocsin::metrics::Metrics;

const DASHBOARD: &str = include_str!("../packaging/grafana/tocsin.json");

/// Labels Prometheus attaches to every scraped series.
const TARGET_LABELS: [&str; 2] = ["instance", "job"];

/// Exported metric names (as queried in PromQL: counters with `_total`)
/// and the labels of each, from the exposition of a `Metrics` with one
/// sample in every family.
fn exported() -> BTreeMap<String, BTreeSet<String>> {
    let m = Metrics::new();
    let empty = m.encode();
    m.sample_every_family();
    let full = m.encode();

    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    // Every family, from its TYPE line, whether or not it has samples.
    for line in empty.lines().chain(full.lines()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split_whitespace();
            let (name, kind) = (it.next().unwrap(), it.next().unwrap());
            let names: Vec<String> = match kind {
                "counter" if name.ends_with("_total") => vec![name.into()],
                "counter" => vec![format!("{name}_total")],
                "histogram" => ["_bucket", "_sum", "_count"]
                    .iter()
                    .map(|s| format!("{name}{s}"))
                    .collect(),
                "summary" => vec![name.into(), format!("{name}_sum"), format!("{name}_count")],
                "info" => vec![format!("{name}_info")],
                _ => vec![name.into()],
            };
            for n in names {
                out.entry(n).or_default();
            }
        }
    }
    // Labels, from the samples.
    for line in full
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let name_end = line.find(['{', ' ']).unwrap();
        let name = &line[..name_end];
        let labels = out
            .get_mut(name)
            .unwrap_or_else(|| panic!("sample {name} has no TYPE line:\n{full}"));
        if line[name_end..].starts_with('{') {
            let inner = &line[name_end + 1..line.rfind('}').unwrap()];
            for pair in inner.split(',') {
                labels.insert(pair.split('=').next().unwrap().trim().to_string());
            }
        }
    }
    out
}

// ------------------------------------------------------------------ PromQL

/// What one PromQL expression refers to.
#[derive(Debug, Default, PartialEq)]
struct Refs {
    metrics: BTreeSet<String>,
    labels: BTreeSet<String>,
    functions: BTreeSet<String>,
}

const FUNCTIONS: &[&str] = &[
    "abs",
    "absent",
    "absent_over_time",
    "avg",
    "avg_over_time",
    "bottomk",
    "ceil",
    "changes",
    "clamp",
    "clamp_max",
    "clamp_min",
    "count",
    "count_over_time",
    "count_values",
    "delta",
    "deriv",
    "exp",
    "floor",
    "group",
    "histogram_quantile",
    "holt_winters",
    "idelta",
    "increase",
    "irate",
    "label_join",
    "label_replace",
    "last_over_time",
    "ln",
    "log10",
    "log2",
    "max",
    "max_over_time",
    "min",
    "min_over_time",
    "predict_linear",
    "quantile",
    "quantile_over_time",
    "rate",
    "resets",
    "round",
    "scalar",
    "sgn",
    "sort",
    "sort_desc",
    "sqrt",
    "stddev",
    "stddev_over_time",
    "stdvar",
    "sum",
    "sum_over_time",
    "time",
    "timestamp",
    "topk",
    "vector",
];
const KEYWORDS: &[&str] = &["and", "or", "unless", "bool", "offset", "atan2"];
const GROUPING: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// A small PromQL lexer: enough to tell metric names from functions,
/// keywords, label names, strings, durations and Grafana variables.
fn promql_refs(expr: &str) -> Result<Refs, String> {
    let b = expr.as_bytes();
    let mut refs = Refs::default();
    let mut i = 0;
    let ident_start = |c: u8| c.is_ascii_alphabetic() || c == b'_' || c == b':';
    let ident_char = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':';
    let skip_ws = |mut j: usize| {
        while j < b.len() && b[j].is_ascii_whitespace() {
            j += 1;
        }
        j
    };
    let close = |open: usize, ch: u8| {
        expr[open..]
            .find(ch as char)
            .map(|k| open + k)
            .ok_or_else(|| format!("unclosed `{}` in {expr}", b[open] as char))
    };
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c == b'"' || c == b'\'' || c == b'`' {
            let mut j = i + 1;
            while j < b.len() && b[j] != c {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            if j >= b.len() {
                return Err(format!("unclosed string in {expr}"));
            }
            i = j + 1;
        } else if c == b'{' {
            // Label matchers: `name op "value"`, comma separated; a value
            // may hold `}` or `,`.
            let mut j = i + 1;
            loop {
                j = skip_ws(j);
                if j >= b.len() {
                    return Err(format!("unclosed `{{` in {expr}"));
                }
                if b[j] == b'}' {
                    i = j + 1;
                    break;
                }
                let s = j;
                while j < b.len() && ident_char(b[j]) {
                    j += 1;
                }
                if s == j {
                    return Err(format!("bad label matcher in {expr}"));
                }
                if &expr[s..j] != "__name__" {
                    refs.labels.insert(expr[s..j].to_string());
                }
                j = skip_ws(j);
                let op = j;
                while j < b.len() && matches!(b[j], b'=' | b'!' | b'~') {
                    j += 1;
                }
                if !matches!(&expr[op..j], "=" | "!=" | "=~" | "!~") {
                    return Err(format!("bad matcher operator in {expr}"));
                }
                j = skip_ws(j);
                let q = *b.get(j).unwrap_or(&0);
                if q != b'"' && q != b'\'' && q != b'`' {
                    return Err(format!("label value not quoted in {expr}"));
                }
                j += 1;
                while j < b.len() && b[j] != q {
                    j += if b[j] == b'\\' { 2 } else { 1 };
                }
                j = skip_ws(j + 1);
                if j < b.len() && b[j] == b',' {
                    j += 1;
                }
            }
        } else if c == b'[' {
            // Range or subquery duration, Grafana variables included.
            i = close(i, b']')? + 1;
        } else if c == b'$' {
            // A Grafana variable: `$name`, `${name}` or `${name:fmt}`.
            let mut j = i + 1;
            if j < b.len() && b[j] == b'{' {
                j = close(j, b'}')? + 1;
            } else {
                while j < b.len() && ident_char(b[j]) {
                    j += 1;
                }
            }
            i = j;
        } else if c.is_ascii_digit() || c == b'.' {
            // A number or a duration (`5m`, `1e3`).
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                i += 1;
            }
        } else if ident_start(c) {
            let s = i;
            while i < b.len() && ident_char(b[i]) {
                i += 1;
            }
            let word = &expr[s..i];
            let next = skip_ws(i);
            let next_word: String = expr[next..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            // `sum by (x) (...)`: an aggregation with its grouping first.
            let paren = (next < b.len() && b[next] == b'(')
                || (!GROUPING.contains(&word) && matches!(next_word.as_str(), "by" | "without"));
            if GROUPING.contains(&word) {
                if paren {
                    let end = close(next, b')')?;
                    for l in expr[next + 1..end].split(',') {
                        let l = l.trim();
                        if !l.is_empty() {
                            refs.labels.insert(l.to_string());
                        }
                    }
                    i = end + 1;
                }
            } else if KEYWORDS.contains(&word) {
            } else if paren {
                refs.functions.insert(word.to_string());
            } else {
                refs.metrics.insert(word.to_string());
            }
        } else if "()+-*/%^=!<>,".contains(c as char) {
            i += 1;
        } else {
            return Err(format!("unexpected `{}` in {expr}", c as char));
        }
    }
    Ok(refs)
}

/// `label_values(SELECTOR, LABEL)` or `label_values(LABEL)`: the selector's
/// references and the label.
fn label_values_refs(query: &str) -> Result<Refs, String> {
    let inner = query
        .trim()
        .strip_prefix("label_values(")
        .and_then(|q| q.strip_suffix(')'))
        .ok_or_else(|| format!("not a label_values query: {query}"))?;
    let (selector, label) = match inner.rfind(',') {
        Some(k) => (&inner[..k], inner[k + 1..].trim()),
        None => ("", inner.trim()),
    };
    let mut refs = promql_refs(selector)?;
    refs.labels.insert(label.to_string());
    Ok(refs)
}

/// Every PromQL expression in the dashboard, with where it is.
fn expressions(dash: &Value) -> Vec<(String, Refs, String)> {
    fn walk(v: &Value, at: &str, out: &mut Vec<(String, Refs, String)>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(e)) = m.get("expr") {
                    let refs = promql_refs(e).unwrap_or_else(|err| panic!("{at}: {err}"));
                    out.push((at.to_string(), refs, e.clone()));
                }
                for (k, v) in m {
                    let title = m.get("title").and_then(Value::as_str).unwrap_or("");
                    walk(
                        v,
                        &format!(
                            "{at}/{k}{}",
                            if title.is_empty() {
                                String::new()
                            } else {
                                format!("[{title}]")
                            }
                        ),
                        out,
                    );
                }
            }
            Value::Array(a) => {
                for (i, v) in a.iter().enumerate() {
                    walk(v, &format!("{at}/{i}"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(dash, "", &mut out);
    for var in dash["templating"]["list"].as_array().unwrap() {
        if var["type"] == "query" {
            let q = match &var["query"] {
                Value::String(s) => s.clone(),
                other => other["query"].as_str().unwrap().to_string(),
            };
            let refs =
                label_values_refs(&q).unwrap_or_else(|e| panic!("variable {}: {e}", var["name"]));
            out.push((
                format!("variable ${}", var["name"].as_str().unwrap()),
                refs,
                q,
            ));
        }
    }
    out
}

fn dashboard() -> Value {
    serde_json::from_str(DASHBOARD).expect("packaging/grafana/tocsin.json is valid JSON")
}

// ------------------------------------------------------------------ tests

#[test]
fn every_expression_names_only_exported_metrics_and_their_labels() {
    let exported = exported();
    let dash = dashboard();
    let exprs = expressions(&dash);
    assert!(exprs.len() >= 20, "found only {} expressions", exprs.len());
    let mut problems = Vec::new();
    for (at, refs, expr) in &exprs {
        if refs.metrics.is_empty() {
            problems.push(format!("{at}: names no metric: {expr}"));
        }
        let mut allowed: BTreeSet<String> = TARGET_LABELS.iter().map(|s| s.to_string()).collect();
        for m in &refs.metrics {
            match exported.get(m) {
                Some(labels) => allowed.extend(labels.iter().cloned()),
                None => problems.push(format!("{at}: `{m}` is not exported: {expr}")),
            }
        }
        for l in refs.labels.difference(&allowed) {
            problems.push(format!(
                "{at}: label `{l}` is on none of {:?}: {expr}",
                refs.metrics
            ));
        }
        for f in &refs.functions {
            if !FUNCTIONS.contains(&f.as_str()) && f != "label_values" {
                problems.push(format!("{at}: unknown function `{f}`: {expr}"));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{}\n\nexported: {:#?}",
        problems.join("\n"),
        exported
    );
}

#[test]
fn the_dashboard_covers_what_issue_9_asks_for() {
    let dash = dashboard();
    let exprs = expressions(&dash);
    let used: BTreeSet<&String> = exprs.iter().flat_map(|(_, r, _)| &r.metrics).collect();
    for m in [
        "tocsin_events_received_total",
        "tocsin_events_rejected_total",
        "tocsin_events_late_total",
        "tocsin_watermark_lag_seconds",
        "tocsin_alerts_total",
        "tocsin_deliveries_total",
        "tocsin_outbox_pending",
        "tocsin_checkpoint_seconds",
    ] {
        assert!(used.contains(&m.to_string()), "no panel shows {m}");
    }
    let titles: Vec<&str> = dash["panels"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["title"].as_str())
        .collect();
    for t in [
        "Ingest rate by source",
        "Rejections by reason",
        "Late events",
        "Watermark lag",
        "Alerts by rule and status",
        "Deliveries by outcome",
        "Outbox pending by channel",
        "Checkpoint duration",
    ] {
        assert!(titles.contains(&t), "no panel titled {t:?} in {titles:?}");
    }
    // The breakdowns are by the label the panel is named for.
    let by = |metric: &str| -> BTreeSet<String> {
        exprs
            .iter()
            .filter(|(at, r, _)| at.starts_with("/panels") && r.metrics.contains(metric))
            .flat_map(|(_, r, _)| r.labels.clone())
            .collect()
    };
    assert!(by("tocsin_events_received_total").contains("source"));
    assert!(by("tocsin_events_rejected_total").contains("reason"));
    assert!(by("tocsin_alerts_total").is_superset(&["rule".into(), "status".into()].into()));
    assert!(by("tocsin_deliveries_total").contains("outcome"));
}

/// Issue 11: every `tocsin_kafka_*` family has a panel, per-partition
/// gauges broken down by topic and partition.
#[test]
fn the_dashboard_shows_every_kafka_metric() {
    let exported = exported();
    let dash = dashboard();
    let exprs = expressions(&dash);
    let kafka: Vec<&String> = exported
        .keys()
        .filter(|m| m.starts_with("tocsin_kafka_"))
        .collect();
    assert_eq!(kafka.len(), 7, "{kafka:?}");
    for m in kafka {
        let panels: Vec<&(String, Refs, String)> = exprs
            .iter()
            .filter(|(at, r, _)| at.starts_with("/panels") && r.metrics.contains(m))
            .collect();
        assert!(!panels.is_empty(), "no panel shows {m}");
        if exported[m].contains("partition") {
            assert!(
                panels
                    .iter()
                    .any(|(_, r, _)| r.labels.contains("topic") && r.labels.contains("partition")),
                "{m} is not shown per topic and partition"
            );
        }
    }
}

#[test]
fn panels_and_variables_are_consistent() {
    let dash = dashboard();
    assert_eq!(dash["uid"], "tocsin");
    let panels = dash["panels"].as_array().unwrap();
    let mut ids = BTreeSet::new();
    for p in panels {
        let id = p["id"].as_u64().expect("a panel id");
        assert!(ids.insert(id), "panel id {id} twice");
        let g = &p["gridPos"];
        let (x, w) = (g["x"].as_u64().unwrap(), g["w"].as_u64().unwrap());
        assert!(x + w <= 24, "panel {:?} is wider than the grid", p["title"]);
        if p["type"] != "row" {
            assert_eq!(
                p["datasource"]["uid"], "${datasource}",
                "panel {:?} does not use the data source variable",
                p["title"]
            );
            assert!(!p["targets"].as_array().unwrap().is_empty());
        }
    }
    // Every `$var` used anywhere is defined (Grafana's own `$__...` aside).
    let defined: BTreeSet<&str> = dash["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    let text = DASHBOARD;
    let mut rest = text;
    while let Some(k) = rest.find('$') {
        rest = &rest[k + 1..];
        let name: String = rest
            .trim_start_matches('{')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if name.is_empty() || name.starts_with("__") {
            continue;
        }
        assert!(
            defined.contains(name.as_str()),
            "${name} is not a dashboard variable"
        );
    }
}

#[test]
fn the_checker_catches_wrong_names() {
    let exported = exported();
    // Counters are queried with `_total`; the family name alone is not a series.
    assert!(exported.contains_key("tocsin_events_received_total"));
    assert!(!exported.contains_key("tocsin_events_received"));
    assert!(exported.contains_key("tocsin_watermark_lag_seconds"));
    assert_eq!(
        exported["tocsin_events_rejected_total"],
        ["reason".to_string(), "source".to_string()].into()
    );

    let r = promql_refs(
        r#"sum by (source, reason) (rate(tocsin_events_rejected_total{instance=~"$instance", source=~"a,}b"}[$__rate_interval])) / ignoring (reason) group_left sum without (x) (tocsin_events_received_total offset 5m) > bool 0.5"#,
    )
    .unwrap();
    assert_eq!(
        r.metrics,
        [
            "tocsin_events_rejected_total".to_string(),
            "tocsin_events_received_total".to_string()
        ]
        .into()
    );
    assert_eq!(
        r.labels,
        ["instance", "reason", "source", "x"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
    assert_eq!(r.functions, ["rate".to_string(), "sum".to_string()].into());

    let wrong = promql_refs("rate(tocsin_events_received[5m]) + up").unwrap();
    assert_eq!(
        wrong.metrics,
        ["tocsin_events_received".to_string(), "up".to_string()].into()
    );
    assert!(wrong.metrics.iter().all(|m| !exported.contains_key(m)));

    let lv =
        label_values_refs(r#"label_values(tocsin_outbox_pending{instance=~"$instance"}, channel)"#)
            .unwrap();
    assert_eq!(lv.metrics, ["tocsin_outbox_pending".to_string()].into());
    assert_eq!(
        lv.labels,
        ["channel", "instance"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
}
