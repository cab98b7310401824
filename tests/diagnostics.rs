//! Load errors (rule-language.md section 10): one broken input per kind of
//! mistake. Each test asserts the exact `line:col` of every diagnostic and
//! snapshots the fully rendered text (headline, source line, caret) under
//! `tests/snapshots/`. The snapshot's `description` holds the input.
//!
//! Update after an intended change with
//! `INSTA_UPDATE=always cargo test --test diagnostics` and review the diff.

use tocsin::lang::{self, Loaded, Options};

fn load_files(files: &[(&str, &str)]) -> Loaded {
    lang::load_texts(
        files
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect(),
        &Options::default(),
    )
}

/// `file:line:col: severity` of every diagnostic, in reported order.
fn positions(l: &Loaded) -> Vec<String> {
    l.diagnostics
        .iter()
        .map(|d| {
            let f = l.sources.file(d.span.file);
            let lc = f.line_col(d.span.start);
            format!("{}:{}:{}: {}", f.name, lc.line, lc.col, d.severity.as_str())
        })
        .collect()
}

/// Loads `text` as `t.rules`, checks that the diagnostics are exactly
/// `expected` (`"LINE:COL"` for an error, `"LINE:COL warning"` for a
/// warning), and snapshots the rendering as `name`.
fn case(name: &str, text: &str, expected: &[&str]) {
    let l = load_files(&[("t.rules", text)]);
    let want: Vec<String> = expected
        .iter()
        .map(|e| match e.split_once(' ') {
            Some((pos, sev)) => format!("t.rules:{pos}: {sev}"),
            None => format!("t.rules:{e}: error"),
        })
        .collect();
    let rendered = l.render();
    assert_eq!(
        positions(&l),
        want,
        "diagnostics of `{name}`:\n{text}\n---\n{rendered}"
    );
    assert!(
        !l.has_errors() || !expected.iter().all(|e| e.contains("warning")),
        "errors where only warnings were expected"
    );
    insta::with_settings!({ description => text, omit_expression => true }, {
        insta::assert_snapshot!(name, rendered);
    });
}

// ------------------------------------------------------------------ syntax

#[test]
fn syntax_missing_operand() {
    case(
        "syntax_missing_operand",
        "rule r {\n    from a where x ==\n}\n",
        &["3:1"],
    );
}

#[test]
fn syntax_missing_operand_after_and() {
    case(
        "syntax_missing_operand_after_and",
        "rule r {\n    from a where x == 1 and\n}\n",
        &["3:1"],
    );
}

#[test]
fn syntax_chained_comparison() {
    case(
        "syntax_chained_comparison",
        "rule r {\n    from a where a < b < c\n}\n",
        &["2:24"],
    );
}

#[test]
fn syntax_unclosed_brace() {
    case(
        "syntax_unclosed_brace",
        "rule r {\n    from a\n    severity info\n",
        &["4:1"],
    );
}

#[test]
fn syntax_bad_token() {
    case(
        "syntax_bad_token",
        "rule r {\n    from a where x == 1 $ 2\n}\n",
        &["2:25"],
    );
}

#[test]
fn syntax_unknown_clause() {
    case(
        "syntax_unknown_clause",
        "rule r {\n    frm auth\n}\n",
        &["2:5"],
    );
}

#[test]
fn syntax_unclosed_string() {
    case(
        "syntax_unclosed_string",
        "rule r {\n    from a where x == \"abc\n}\n",
        &["2:23"],
    );
}

#[test]
fn syntax_decimal_duration() {
    case(
        "syntax_decimal_duration",
        "rule r {\n    from a\n    absent 1.5s\n}\n",
        &["3:12"],
    );
}

#[test]
fn syntax_error_columns_count_characters() {
    // `€` and `é` are multi-byte: the column counts characters.
    case(
        "syntax_error_columns_count_characters",
        "rule r {\n    from a where \"€é\" == \"x\" $\n}\n",
        &["2:30"],
    );
}

#[test]
fn syntax_error_recovery_keeps_later_rules() {
    // The broken rule is reported; the next rule is still parsed and checked.
    case(
        "syntax_error_recovery_keeps_later_rules",
        "rule a {\n    from x where\n}\nrule b {\n    severity hihg\n    from y\n}\n",
        &["3:1", "5:14"],
    );
}

// ------------------------------------------------------------------ duplicates

#[test]
fn duplicate_rule_name() {
    case(
        "duplicate_rule_name",
        "rule twice {\n    from a\n}\nrule other {\n    from b\n}\nrule twice {\n    from c\n}\n",
        &["7:6"],
    );
}

#[test]
fn duplicate_key_name() {
    case(
        "duplicate_key_name",
        "rule r {\n    key user, lower( host ), user, lower(host)\n    from a\n}\n",
        &["2:30", "2:36"],
    );
}

#[test]
fn duplicate_clause() {
    case(
        "duplicate_clause",
        "rule r {\n    severity info\n    from a\n    severity error\n}\n",
        &["4:5"],
    );
}

#[test]
fn duplicate_step_name() {
    case(
        "duplicate_step_name",
        "rule r {\n    sequence within 1m {\n        a: x\n        a: y\n    }\n}\n",
        &["4:9"],
    );
}

#[test]
fn duplicate_label_list_and_let() {
    case(
        "duplicate_label_list_and_let",
        "list l = [1]\nlist l = [2]\nlet k = true\nlet k = false\nrule r {\n    from a\n    labels { team: \"a\", team: \"b\" }\n}\n",
        &["2:6", "4:5", "7:25"],
    );
}

// ------------------------------------------------------------------ names

#[test]
fn unknown_list_did_you_mean() {
    case(
        "unknown_list_did_you_mean",
        "list admins = [\"root\"]\nrule r {\n    from auth where user in admin\n}\n",
        &["3:29"],
    );
}

#[test]
fn unknown_list_without_near_miss() {
    case(
        "unknown_list_without_near_miss",
        "rule r {\n    from auth where user not in tags\n}\n",
        &["2:33"],
    );
}

#[test]
fn unknown_step_in_count() {
    case(
        "unknown_step_in_count",
        "rule r {\n    sequence within 1m {\n        fail: auth +\n        ok: auth where count(fial) >= 3\n    }\n}\n",
        &["4:30"],
    );
}

#[test]
fn count_of_a_path_in_a_step() {
    case(
        "count_of_a_path_in_a_step",
        "rule r {\n    sequence within 1m {\n        a: x\n        b: y where count(a.b) > 1\n    }\n}\n",
        &["4:20"],
    );
}

#[test]
fn step_near_miss_warns() {
    // `fial.ip` is read as an event field, with a warning (spec 3).
    case(
        "step_near_miss_warns",
        "rule r {\n    sequence within 1m {\n        fail: auth\n        ok: auth where fial.ip == ip\n    }\n}\n",
        &["4:24 warning"],
    );
}

#[test]
fn reference_to_later_step() {
    case(
        "reference_to_later_step",
        "rule r {\n    sequence within 1m {\n        a: x where v == b.v\n        b: y\n    }\n}\n",
        &["3:25"],
    );
}

#[test]
fn reference_to_the_step_itself() {
    case(
        "reference_to_the_step_itself",
        "rule r {\n    sequence within 1m {\n        a: x\n        b: y where count(b) > 1 or b.v == 1\n    }\n}\n",
        &["4:26", "4:36"],
    );
}

#[test]
fn reference_to_negated_step() {
    case(
        "reference_to_negated_step",
        "rule r {\n    sequence within 1m {\n        a: x\n        not n: y\n        b: z where n.v == 1 or count(n) > 0\n    }\n}\n",
        &["5:20", "5:38"],
    );
}

#[test]
fn let_recursion_direct() {
    case(
        "let_recursion_direct",
        "let a = a and x\nrule r {\n    from e where a\n}\n",
        &["1:9"],
    );
}

#[test]
fn let_recursion_mutual() {
    case(
        "let_recursion_mutual",
        "let a = b or x\nlet b = not a\nrule r {\n    from e where a\n}\n",
        &["1:9", "2:13"],
    );
}

// ------------------------------------------------------------------ rule kinds

#[test]
fn window_in_a_sequence() {
    case(
        "window_in_a_sequence",
        "rule r {\n    sequence within 1m {\n        a: x\n        b: y\n    }\n    window sliding 1m\n}\n",
        &["6:5"],
    );
}

#[test]
fn from_and_absent_in_a_sequence() {
    case(
        "from_and_absent_in_a_sequence",
        "rule r {\n    from a\n    sequence within 1m {\n        a: x\n        b: y\n    }\n    absent 1m\n}\n",
        &["2:5", "7:5"],
    );
}

#[test]
fn absent_in_a_threshold() {
    case(
        "absent_in_a_threshold",
        "rule r {\n    from a\n    window sliding 1m\n    when count() > 1\n    absent 1m\n}\n",
        &["5:5"],
    );
}

#[test]
fn when_without_window() {
    case(
        "when_without_window",
        "rule r {\n    from a\n    when count() > 3\n}\n",
        &["3:5"],
    );
}

#[test]
fn window_without_when() {
    case(
        "window_without_when",
        "rule r {\n    from a\n    window tumbling 1m\n}\n",
        &["3:5"],
    );
}

#[test]
fn neither_from_nor_sequence() {
    case(
        "neither_from_nor_sequence",
        "rule lonely {\n    severity info\n    key user\n}\n",
        &["1:6"],
    );
}

#[test]
fn window_without_from() {
    case(
        "window_without_from",
        "rule r {\n    window sliding 1m\n    when count() > 1\n}\n",
        &["1:6", "2:5", "3:5"],
    );
}

// ------------------------------------------------------------------ aggregates

#[test]
fn aggregate_in_from_where() {
    case(
        "aggregate_in_from_where",
        "rule r {\n    from a where count() > 1\n}\n",
        &["2:18"],
    );
}

#[test]
fn aggregate_in_key() {
    case(
        "aggregate_in_key",
        "rule r {\n    key avg(v)\n    from a\n    window tumbling 1m\n    when count() > 3\n}\n",
        &["2:9"],
    );
}

#[test]
fn aggregate_in_step_condition() {
    case(
        "aggregate_in_step_condition",
        "rule r {\n    sequence within 1m {\n        a: x\n        b: y where sum(v) > 1\n    }\n}\n",
        &["4:20"],
    );
}

#[test]
fn event_field_outside_aggregate_in_when() {
    case(
        "event_field_outside_aggregate_in_when",
        "rule r {\n    from a\n    window sliding 1m\n    when count() > 1 and status.code == 500\n}\n",
        &["4:26"],
    );
}

#[test]
fn nested_aggregate() {
    case(
        "nested_aggregate",
        "rule r {\n    from a\n    window sliding 1m\n    when max(avg(v)) > 1\n}\n",
        &["4:14"],
    );
}

#[test]
fn aggregate_arity() {
    case(
        "aggregate_arity",
        "rule r {\n    from a\n    window sliding 1m\n    when avg() > 1 or count(a, b) > 1\n}\n",
        &["4:10", "4:23"],
    );
}

// ------------------------------------------------------------------ literals

#[test]
fn invalid_regex() {
    case(
        "invalid_regex",
        "rule r {\n    from a where path matches \"a(b\"\n}\n",
        &["2:31"],
    );
}

#[test]
fn matches_needs_a_literal() {
    case(
        "matches_needs_a_literal",
        "rule r {\n    from a where path matches pattern\n}\n",
        &["2:31"],
    );
}

#[test]
fn invalid_escape() {
    case(
        "invalid_escape",
        "rule r {\n    from a where s == \"x\\qy\"\n}\n",
        &["2:25"],
    );
}

#[test]
fn invalid_unicode_escape_not_a_scalar_value() {
    case(
        "invalid_unicode_escape_not_a_scalar_value",
        "rule r {\n    from a where s == \"\\u{110000}\" or s == \"\\u{D800}\"\n}\n",
        &["2:24", "2:45"],
    );
}

#[test]
fn invalid_unicode_escape_seven_digits() {
    case(
        "invalid_unicode_escape_seven_digits",
        "rule r {\n    from a where s == \"ok \\u{1F6000}\"\n}\n",
        &["2:27"],
    );
}

#[test]
fn invalid_unicode_escape_shapes() {
    // No braces, empty braces, non-hex digit; each reported at its backslash.
    case(
        "invalid_unicode_escape_shapes",
        "rule r {\n    description \"\\u41 \\u{} \\u{12G}\"\n    from a\n}\n",
        &["2:18", "2:23", "2:28"],
    );
}

#[test]
fn invalid_escape_after_multibyte_character() {
    case(
        "invalid_escape_after_multibyte_character",
        "rule r {\n    message \"é€ \\x\"\n    from a\n}\n",
        &["2:17"],
    );
}

// ------------------------------------------------------------------ durations

#[test]
fn zero_within() {
    case(
        "zero_within",
        "rule r {\n    sequence within 0s {\n        a: x\n        b: y\n    }\n}\n",
        &["2:21"],
    );
}

#[test]
fn zero_window() {
    case(
        "zero_window",
        "rule r {\n    from a\n    window tumbling 0m\n    when count() > 1\n}\n",
        &["3:21"],
    );
}

#[test]
fn zero_sliding_and_session() {
    case(
        "zero_sliding_and_session",
        "rule r {\n    from a\n    window sliding 0ms\n    when count() > 1\n}\nrule s {\n    from a\n    window session 0d0h\n    when count() > 1\n}\n",
        &["3:20", "8:20"],
    );
}

#[test]
fn zero_absent() {
    case(
        "zero_absent",
        "rule r {\n    from a\n    absent 0s\n}\n",
        &["3:12"],
    );
}

#[test]
fn zero_throttle() {
    case(
        "zero_throttle",
        "rule r {\n    from a\n    throttle 0ms\n}\n",
        &["3:14"],
    );
}

#[test]
fn zero_hopping_every() {
    case(
        "zero_hopping_every",
        "rule r {\n    from a\n    window hopping 5m every 0s\n    when count() > 1\n}\n",
        &["3:29"],
    );
}

#[test]
fn duration_units_out_of_order() {
    case(
        "duration_units_out_of_order",
        "rule r {\n    from a\n    absent 1s1m\n    throttle 1m1m\n}\n",
        &["3:12", "4:14"],
    );
}

// ------------------------------------------------------------------ step order (5.1)

#[test]
fn step_order_first_step_negated() {
    case(
        "step_order_first_step_negated",
        "rule r {\n    sequence within 1m {\n        not a: x\n        b: y\n    }\n}\n",
        &["3:9"],
    );
}

#[test]
fn step_order_adjacent_negations() {
    case(
        "step_order_adjacent_negations",
        "rule r {\n    sequence within 1m {\n        a: x\n        not n1: y\n        not n2: z\n        b: w\n    }\n}\n",
        &["5:9"],
    );
}

#[test]
fn step_order_adjacent_negations_at_end() {
    case(
        "step_order_adjacent_negations_at_end",
        "rule r {\n    sequence within 1m {\n        a: x\n        b: y\n        not n1: z\n        not n2: w\n    }\n}\n",
        &["6:9"],
    );
}

#[test]
fn step_order_negated_with_quantifier() {
    case(
        "step_order_negated_with_quantifier",
        "rule r {\n    sequence within 1m {\n        a: x\n        not n: y where v > 1 +\n        not m: z {2,}\n    }\n}\n",
        &["4:30", "5:9", "5:18"],
    );
}

#[test]
fn step_order_adjacent_quantified_positives() {
    case(
        "step_order_adjacent_quantified_positives",
        "rule r {\n    sequence within 1m {\n        a: x\n        b: y +\n        c: y {2,}\n        d: z\n    }\n}\n",
        &["5:9"],
    );
}

#[test]
fn step_order_adjacent_quantified_positives_with_negation_between() {
    case(
        "step_order_adjacent_quantified_positives_with_negation_between",
        "rule r {\n    sequence within 1m {\n        a: x {3,}\n        not n: y\n        b: z +\n    }\n}\n",
        &["5:9"],
    );
}

#[test]
fn step_order_zero_quantifier() {
    case(
        "step_order_zero_quantifier",
        "rule r {\n    sequence within 1m {\n        a: x {0,}\n        b: y\n    }\n}\n",
        &["3:14"],
    );
}

#[test]
fn step_order_fewer_than_two_steps() {
    case(
        "step_order_fewer_than_two_steps",
        "rule r {\n    sequence within 1m { only: a }\n}\nrule s {\n    sequence within 1m { }\n}\n",
        &["2:5", "5:5"],
    );
}

#[test]
fn step_order_missing_within() {
    case(
        "step_order_missing_within",
        "rule r {\n    sequence {\n        a: x\n        not b: y\n    }\n}\n",
        &["2:5"],
    );
}

// ------------------------------------------------------------------ clauses and functions

#[test]
fn unknown_severity_did_you_mean() {
    case(
        "unknown_severity_did_you_mean",
        "rule r {\n    severity critcal\n    from a\n}\n",
        &["2:14"],
    );
}

#[test]
fn unknown_severity_without_near_miss() {
    case(
        "unknown_severity_without_near_miss",
        "rule r {\n    severity high\n    from a\n}\n",
        &["2:14"],
    );
}

#[test]
fn unknown_function_did_you_mean() {
    case(
        "unknown_function_did_you_mean",
        "rule r {\n    from a where lowr(user) == \"x\" or frobnicate(user)\n}\n",
        &["2:18", "2:39"],
    );
}

#[test]
fn function_wrong_arity() {
    case(
        "function_wrong_arity",
        "rule r {\n    from a where lower(user, host) == \"x\" or len() == 0\n}\n",
        &["2:18", "2:46"],
    );
}

#[test]
fn exists_of_a_non_path() {
    case(
        "exists_of_a_non_path",
        "rule r {\n    from a where exists(lower(user)) or exists(\"user\") or exists(a, b)\n}\n",
        &["2:25", "2:48", "2:59"],
    );
}

#[test]
fn invalid_message_template() {
    case(
        "invalid_message_template",
        "rule r {\n    from a\n    message \"{{ unclosed\"\n}\n",
        &["3:13"],
    );
}

#[test]
fn invalid_message_template_block() {
    case(
        "invalid_message_template_block",
        "rule r {\n    from a\n    message \"{% if key.user %}no end\"\n}\n",
        &["3:13"],
    );
}

#[test]
fn unknown_channel_with_config() {
    let opts = Options {
        channels: Some(["ops".to_string(), "security".to_string()].into()),
    };
    let text = "rule r {\n    from a\n    notify ops, sec, pager\n}\n";
    let l = lang::load_texts(vec![("t.rules".into(), text.into())], &opts);
    assert_eq!(
        positions(&l),
        ["t.rules:3:17: error", "t.rules:3:22: error"],
        "{}",
        l.render()
    );
    insta::with_settings!({ description => text, omit_expression => true }, {
        insta::assert_snapshot!("unknown_channel_with_config", l.render());
    });
}

// ------------------------------------------------------------------ several mistakes

#[test]
fn three_mistakes_in_one_file() {
    let text = r#"list admins = ["root", "admin"]

rule root_login {
    from auth where user in admins and
}

rule brute_force {
    severity critcal
    key user
    sequence within 5m {
        fail: auth where outcome == "failure" {3,}
        ok:   auth where outcome == "success"
    }
}

rule admin_change {
    from audit where actor in admin
}

rule fine {
    from auth where user in admins
}
"#;
    let l = load_files(&[("auth.rules", text)]);
    assert_eq!(l.diagnostics.len(), 3, "{}", l.render());
    assert_eq!(
        positions(&l),
        [
            "auth.rules:5:1: error",
            "auth.rules:8:14: error",
            "auth.rules:17:31: error",
        ]
    );
    // Parsing resumes after the syntax error: the rules after it are checked
    // and the valid one is still compiled.
    let names: Vec<_> = l.program.rules.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["fine"]);
    insta::with_settings!({ description => text, omit_expression => true }, {
        insta::assert_snapshot!("three_mistakes_in_one_file", l.render());
    });
}

#[test]
fn errors_in_two_files_in_one_run() {
    let a = "list admins = [\"root\"]\n\nrule root_login {\n    from auth where user in admins\n}\n\nrule bad_window {\n    from http\n    window sliding 0s\n    when count() > 1\n}\n";
    let b = "rule root_login {\n    from auth\n}\n\nrule typo {\n    from http where lowr(path) == \"/\" and user in admin\n}\n\nrule broken {\n    from x where (a\n}\n";
    let l = load_files(&[("rules/10-a.rules", a), ("rules/20-b.rules", b)]);
    assert_eq!(
        positions(&l),
        [
            "rules/10-a.rules:9:20: error",
            "rules/20-b.rules:1:6: error",
            "rules/20-b.rules:6:21: error",
            "rules/20-b.rules:6:51: error",
            "rules/20-b.rules:11:1: error",
        ],
        "{}",
        l.render()
    );
    insta::with_settings!({ description => format!("--- 10-a.rules\n{a}--- 20-b.rules\n{b}"), omit_expression => true }, {
        insta::assert_snapshot!("errors_in_two_files_in_one_run", l.render());
    });
}

#[test]
fn a_let_used_in_many_rules_reports_once() {
    let text = "let bad = lowr(x) == 1\nrule a {\n    from e where bad\n}\nrule b {\n    from f where bad and bad\n}\n";
    case("a_let_used_in_many_rules_reports_once", text, &["1:11"]);
}

#[test]
fn error_lines_are_headlines_only() {
    let l = load_files(&[("t.rules", "rule r {\n    from a\n    absent 0s\n}\n")]);
    assert_eq!(
        l.error_lines(),
        ["t.rules:3:12: error: `absent` must be a positive duration, not zero"]
    );
}

/// A syntax error names what was found, never "end of file" in the middle
/// of a line: white space that is not allowed (a no-break space) is named.
#[test]
fn syntax_error_names_white_space_found() {
    let l = load_files(&[("t.rules", "rule r {\n    from a where x\u{a0}== 1\n}\n")]);
    assert_eq!(positions(&l), ["t.rules:2:19: error"], "{}", l.render());
    let text = l.render();
    assert!(
        text.contains("found white space (U+00A0)"),
        "white space not named:\n{text}"
    );
    assert!(!text.contains("end of file"), "{text}");
    let l = load_files(&[("t.rules", "rule r {\n    from a where x\u{c}== 1\n}\n")]);
    let text = l.render();
    assert!(text.contains("found white space (U+000C)"), "{text}");
    // At the real end, it still says so.
    let l = load_files(&[("t.rules", "rule r {\n    from a where x == 1 ")]);
    let text = l.render();
    assert!(text.contains("found end of file"), "{text}");
}

/// `a[ 0 ] == 5` and `geo . country` load (white space between the parts
/// of a path is insignificant, rule-language.md 3), instead of "expected a
/// number, found end of file" at the space.
#[test]
fn whitespace_inside_a_path_is_not_an_error() {
    let l = load_files(&[(
        "t.rules",
        "rule r1 { from a where a[ 0 ] == 5 }\nrule r2 { from a where geo . country == \"fr\" }\n",
    )]);
    assert!(l.diagnostics.is_empty(), "{}", l.render());
}
