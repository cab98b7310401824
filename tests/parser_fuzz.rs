//! The front end never panics, whatever the input: arbitrary strings,
//! strings made of rule-language characters, and valid rule files with
//! random bytes or tokens deleted, inserted or replaced. Every diagnostic
//! must also render, and its span must lie on character boundaries of its
//! file (the renderer relies on it).

use proptest::prelude::*;
use tocsin::lang::{self, Loaded, Options};

/// Valid rule files to mutate: the spec's examples, corner cases of the
/// grammar, and the example rules shipped in `rules/`.
const SEEDS: &[&str] = &[
    include_str!("../rules/10-auth.rules"),
    include_str!("../rules/20-http.rules"),
    include_str!("../rules/30-heartbeat.rules"),
    include_str!("../rules/40-orders.rules"),
    r#"list admins = ["root", "admin", "ops", -1.5, 2s, true, null]
let failed = outcome == "failure"
rule root_login {
    from auth where user in admins and outcome == "success" and not failed
}
"#,
    r#"rule error_burst {
    severity warning
    key      service, lower( region )
    from     http where status >= 500 and path matches "^/api/v[0-9]+/"
    window   hopping 5m every 1m
    when     count() > 100 or p99(latency_ms) > 2000 and avg( latency_ms * 2 ) >= 1s500ms
    labels   { team: "platform", "odd key": "x\ty" }
    notify   ops
    message  "{{ key.service }} {{ values['count()'] }}"
}
"#,
    r#"rule s {
    key user
    sequence within 1h30m {
        first: login where `odd key`.x[0] == "\u{1F600}\"\\\n"
        not out: logout where user == first.user
        mid: sudo where count(first) >= 2 and v == (a + b) +
        not stop: *
    }
    throttle 1m0s
}
"#,
    r#"rule w { from * window session 30s when first(v) != last(v) or p95(v) == null or -min(v) % 2 < max(v) / 3 }
rule a { from heartbeat absent 2m }
rule t { from x where exists(a.b) and len(s) > 0 and number(n) - abs(m) != 0 and x not in [1, 2] and s contains "a" or s starts_with "b" or s ends_with "c" }
"#,
];

/// Pieces of the language, for token-level mutations.
const TOKENS: &[&str] = &[
    "rule",
    "list",
    "let",
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    ":",
    ",",
    ".",
    "+",
    "-",
    "*",
    "/",
    "%",
    "==",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "not",
    "in",
    "and",
    "or",
    "matches",
    "contains",
    "where",
    "from",
    "sequence",
    "within",
    "window",
    "sliding",
    "tumbling",
    "hopping",
    "every",
    "session",
    "when",
    "absent",
    "throttle",
    "labels",
    "notify",
    "message",
    "severity",
    "key",
    "description",
    "\"",
    "\"\\u{",
    "\\",
    "`",
    "#",
    "\n",
    " ",
    "{3,}",
    "{0,}",
    "0s",
    "1s1m",
    "99999999999999999999d",
    "1e999",
    "count()",
    "count(",
    "null",
    "true",
    "é",
    "€",
    "\u{1F600}",
    "\r\n",
    "\t",
    "{{",
    "}}",
    "{%",
    "not x:",
    "x:",
];

fn check(texts: Vec<(String, String)>) {
    let loaded = lang::load_texts(texts, &Options::default());
    check_loaded(&loaded);
}

fn check_loaded(l: &Loaded) {
    for d in &l.diagnostics {
        let f = l.sources.file(d.span.file);
        assert!(
            d.span.start <= d.span.end && d.span.end <= f.text.len(),
            "span out of range: {d:?}"
        );
        assert!(
            f.text.is_char_boundary(d.span.start) && f.text.is_char_boundary(d.span.end),
            "span not on char boundaries: {d:?}"
        );
        let _ = d.to_json(&l.sources);
    }
    let rendered = l.render();
    for d in &l.diagnostics {
        assert!(rendered.contains(&d.headline(&l.sources)), "{rendered}");
    }
    let _ = l.error_lines();
    // A load with no error gives a usable program.
    if !l.has_errors() {
        for r in &l.program.rules {
            let _ = r.streams();
        }
    }
}

fn one(text: String) {
    check(vec![("t.rules".to_string(), text)]);
}

#[derive(Debug, Clone)]
enum Edit {
    Delete { at: usize, len: usize },
    InsertByte { at: usize, byte: u8 },
    ReplaceByte { at: usize, byte: u8 },
    InsertToken { at: usize, token: usize },
    ReplaceWithToken { at: usize, len: usize, token: usize },
}

fn edit() -> impl Strategy<Value = Edit> {
    // Positions are taken modulo the length at apply time.
    let at = any::<usize>();
    prop_oneof![
        (at, 1usize..8).prop_map(|(at, len)| Edit::Delete { at, len }),
        (at, any::<u8>()).prop_map(|(at, byte)| Edit::InsertByte { at, byte }),
        (at, any::<u8>()).prop_map(|(at, byte)| Edit::ReplaceByte { at, byte }),
        (at, 0..TOKENS.len()).prop_map(|(at, token)| Edit::InsertToken { at, token }),
        (at, 1usize..6, 0..TOKENS.len()).prop_map(|(at, len, token)| Edit::ReplaceWithToken {
            at,
            len,
            token
        }),
    ]
}

/// Applies the edits to the bytes of `seed`; invalid UTF-8 is replaced.
fn mutate(seed: &str, edits: &[Edit]) -> String {
    let mut b = seed.as_bytes().to_vec();
    for e in edits {
        let n = b.len();
        let pos = |at: usize| if n == 0 { 0 } else { at % (n + 1) };
        match *e {
            Edit::Delete { at, len } => {
                let s = pos(at).min(n);
                let end = (s + len).min(n);
                b.drain(s..end);
            }
            Edit::InsertByte { at, byte } => b.insert(pos(at), byte),
            Edit::ReplaceByte { at, byte } => {
                if n > 0 {
                    b[at % n] = byte;
                }
            }
            Edit::InsertToken { at, token } => {
                let p = pos(at);
                b.splice(p..p, TOKENS[token].bytes());
            }
            Edit::ReplaceWithToken { at, len, token } => {
                let s = pos(at).min(n);
                let end = (s + len).min(n);
                b.splice(s..end, TOKENS[token].bytes());
            }
        }
    }
    String::from_utf8_lossy(&b).into_owned()
}

#[test]
fn seeds_are_valid() {
    for s in SEEDS {
        let l = lang::load_texts(vec![("t.rules".into(), s.to_string())], &Options::default());
        assert!(l.diagnostics.is_empty(), "{}", l.render());
    }
}

proptest! {
    // A few hundred cases by default (fast); `PROPTEST_CASES=100000` for a long run.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(400),
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_strings_never_panic(text in any::<String>()) {
        one(text);
    }

    #[test]
    fn language_alphabet_strings_never_panic(
        text in "[a-z_0-9 \t\n{}()\\[\\]:,.+*/%<>=!\"`#\\\\u-]{0,300}"
    ) {
        one(text);
    }

    #[test]
    fn token_soup_never_panics(tokens in prop::collection::vec(0..TOKENS.len(), 0..80)) {
        let text: Vec<&str> = tokens.iter().map(|&t| TOKENS[t]).collect();
        one(text.join(" "));
        one(text.concat());
    }

    #[test]
    fn mutated_valid_files_never_panic(
        seed in 0..SEEDS.len(),
        edits in prop::collection::vec(edit(), 1..6),
    ) {
        one(mutate(SEEDS[seed], &edits));
    }

    #[test]
    fn mutated_files_in_one_run_never_panic(
        a in 0..SEEDS.len(),
        b in 0..SEEDS.len(),
        edits in prop::collection::vec(edit(), 1..4),
    ) {
        // Two files: duplicates across files, errors in both.
        check(vec![
            ("a.rules".to_string(), mutate(SEEDS[a], &edits)),
            ("b.rules".to_string(), SEEDS[b].to_string()),
        ]);
    }
}
