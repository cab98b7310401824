//! Parse tests for every construct of the rule grammar (rule-language.md
//! sections 3-8), through the library API. Each test asserts the exact
//! compiled values, not only that the text loads.
//!
//! Expressions are compared through a small S-expression printer (`sx`) of
//! the compiled [`CExpr`] tree, so the tree *shape* (precedence,
//! associativity, resolution of names) is what is checked.

use std::sync::Arc;

use serde_json::json;
use tocsin::lang::program::{
    AggFunc, AlertSeverity, ArithOp, CExpr, CmpOp, Func, PathSeg, Program, Rule, RuleKind, StrOp,
    Window,
};
use tocsin::lang::{self, Loaded, Options};

// ------------------------------------------------------------------ helpers

fn load(text: &str) -> Loaded {
    lang::load_texts(
        vec![("t.rules".to_string(), text.to_string())],
        &Options::default(),
    )
}

/// Loads `text`, which must produce no diagnostic at all (not even a warning).
fn program(text: &str) -> Program {
    let l = load(text);
    assert!(
        l.diagnostics.is_empty(),
        "expected no diagnostics for\n{text}\n---\n{}",
        l.render()
    );
    l.program
}

/// The single rule of `text`.
fn rule(text: &str) -> Arc<Rule> {
    let p = program(text);
    assert_eq!(p.rules.len(), 1, "expected exactly one rule");
    p.rules[0].clone()
}

/// The compiled `where` condition of `rule r { from a where COND }` (plus
/// any extra declarations).
fn cond_with(decls: &str, cond: &str) -> CExpr {
    let r = rule(&format!(
        "{decls}\nrule r {{\n    from a where {cond}\n}}\n"
    ));
    match &r.kind {
        RuleKind::Filter(f) => f.cond.clone().expect("a where condition"),
        other => panic!("expected a filter rule, got {other:?}"),
    }
}

fn cond(c: &str) -> CExpr {
    cond_with("", c)
}

/// `cond` printed as an S-expression.
fn cx(c: &str) -> String {
    sx(&cond(c))
}

fn path(p: &[PathSeg]) -> String {
    let mut s = String::new();
    for (i, seg) in p.iter().enumerate() {
        match seg {
            PathSeg::Field(f) => {
                let plain = f
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && f.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if i > 0 {
                    s.push('.');
                }
                if plain {
                    s.push_str(f);
                } else {
                    s.push('`');
                    s.push_str(f);
                    s.push('`');
                }
            }
            PathSeg::Index(n) => s.push_str(&format!("[{n}]")),
        }
    }
    s
}

/// A compact, unambiguous rendering of a compiled expression:
/// `$a.b` field, `@0.ip` field of step 0, `#0` aggregate 0, literals as JSON.
fn sx(e: &CExpr) -> String {
    let b = |op: &str, x: &CExpr, y: &CExpr| format!("({op} {} {})", sx(x), sx(y));
    match e {
        CExpr::Lit(v) => v.to_string(),
        CExpr::Field(p) => format!("${}", path(p)),
        CExpr::Exists(p) => format!("(exists ${})", path(p)),
        CExpr::StepField(i, p) => format!("@{i}.{}", path(p)),
        CExpr::StepCount(i) => format!("(count @{i})"),
        CExpr::Agg(i) => format!("#{i}"),
        CExpr::Call(f, a) => {
            let name = match f {
                Func::Lower => "lower",
                Func::Upper => "upper",
                Func::Len => "len",
                Func::Number => "number",
                Func::String => "string",
                Func::Abs => "abs",
            };
            format!("({name} {})", sx(a))
        }
        CExpr::Neg(a) => format!("(neg {})", sx(a)),
        CExpr::Arith(op, x, y) => b(
            match op {
                ArithOp::Add => "+",
                ArithOp::Sub => "-",
                ArithOp::Mul => "*",
                ArithOp::Div => "/",
                ArithOp::Rem => "%",
            },
            x,
            y,
        ),
        CExpr::Cmp(op, x, y) => b(
            match op {
                CmpOp::Eq => "==",
                CmpOp::Ne => "!=",
                CmpOp::Lt => "<",
                CmpOp::Le => "<=",
                CmpOp::Gt => ">",
                CmpOp::Ge => ">=",
            },
            x,
            y,
        ),
        CExpr::IsNull(x, negated) => {
            format!(
                "({} {})",
                if *negated { "notnull" } else { "isnull" },
                sx(x)
            )
        }
        CExpr::In(x, y, negated) => b(if *negated { "notin" } else { "in" }, x, y),
        CExpr::Matches(x, re) => format!("(matches {} /{}/)", sx(x), re.as_str()),
        CExpr::Str(op, x, y) => b(
            match op {
                StrOp::Contains => "contains",
                StrOp::StartsWith => "starts_with",
                StrOp::EndsWith => "ends_with",
            },
            x,
            y,
        ),
        CExpr::And(x, y) => b("and", x, y),
        CExpr::Or(x, y) => b("or", x, y),
        CExpr::Not(x) => format!("(not {})", sx(x)),
    }
}

fn lit(e: &CExpr) -> serde_json::Value {
    match e {
        CExpr::Lit(v) => v.clone(),
        other => panic!("expected a literal, got {}", sx(other)),
    }
}

/// The literal on the right of `x == LITERAL`.
fn rhs_literal(literal: &str) -> serde_json::Value {
    match cond(&format!("x == {literal}")) {
        CExpr::Cmp(CmpOp::Eq, _, r) => lit(&r),
        other => panic!("expected x == literal, got {}", sx(&other)),
    }
}

fn threshold(text: &str) -> tocsin::lang::program::Threshold {
    match &rule(text).kind {
        RuleKind::Threshold(t) => t.clone(),
        other => panic!("expected a threshold rule, got {other:?}"),
    }
}

fn sequence(text: &str) -> tocsin::lang::program::Sequence {
    match &rule(text).kind {
        RuleKind::Sequence(s) => s.clone(),
        other => panic!("expected a sequence rule, got {other:?}"),
    }
}

// ------------------------------------------------------------------ files, list, let

#[test]
fn empty_file_and_comments_only() {
    assert!(program("").rules.is_empty());
    assert!(
        program("# nothing here\n   \n\t# at all\n")
            .rules
            .is_empty()
    );
}

#[test]
fn list_and_let_used_before_declared() {
    let p = program(
        r#"
rule root_login {
    from auth where user in admins and failed
}
let failed = outcome == "failure"   # a macro
list admins = ["root", "admin", 3, -1.5, true, null, 1m, -2s]
"#,
    );
    let RuleKind::Filter(f) = &p.rules[0].kind else {
        panic!("filter")
    };
    assert_eq!(f.stream.as_deref(), Some("auth"));
    assert_eq!(
        sx(f.cond.as_ref().unwrap()),
        r#"(and (in $user ["root","admin",3,-1.5,true,null,60000,-2000]) (== $outcome "failure"))"#
    );
}

#[test]
fn list_with_trailing_comma_and_empty_list() {
    assert_eq!(
        cx_with("list l = [\"a\", \"b\",]\nlist e = []", "x in l or x in e"),
        r#"(or (in $x ["a","b"]) (in $x []))"#
    );
}

fn cx_with(decls: &str, c: &str) -> String {
    sx(&cond_with(decls, c))
}

#[test]
fn let_refers_to_other_lets_and_lists_in_any_order() {
    assert_eq!(
        cx_with(
            "let a = b and c\nlet c = user in ops\nlist ops = [\"x\"]\nlet b = not d\nlet d = n > 1",
            "a or d"
        ),
        r#"(or (and (not (> $n 1)) (in $user ["x"])) (> $n 1))"#
    );
}

#[test]
fn let_and_list_visible_across_files() {
    let l = lang::load_texts(
        vec![
            (
                "a.rules".into(),
                "rule r { from a where failed and u in l }".into(),
            ),
            (
                "b.rules".into(),
                "let failed = ok == false\nlist l = [1]".into(),
            ),
        ],
        &Options::default(),
    );
    assert!(l.diagnostics.is_empty(), "{}", l.render());
    let RuleKind::Filter(f) = &l.program.rules[0].kind else {
        panic!()
    };
    assert_eq!(
        sx(f.cond.as_ref().unwrap()),
        "(and (== $ok false) (in $u [1]))"
    );
    assert_eq!(l.program.rules[0].file, "a.rules");
}

#[test]
fn let_shadows_field_but_backticked_name_is_a_field() {
    assert_eq!(
        cx_with("let failed = outcome == \"failure\"", "failed and `failed`"),
        r#"(and (== $outcome "failure") $failed)"#
    );
}

#[test]
fn let_followed_by_path_is_a_field() {
    // `failed.x` is a path with segments: not the let.
    assert_eq!(
        cx_with("let failed = true", "failed.x == 1"),
        "(== $failed.x 1)"
    );
}

#[test]
fn rule_order_source_and_line() {
    let p = program("rule b {\n  from x\n}\n\n# c\nrule a { from y }\n");
    let names: Vec<_> = p.rules.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["b", "a"]);
    assert_eq!(p.rules[0].line, 1);
    assert_eq!(p.rules[1].line, 6);
    assert_eq!(p.rules[0].file, "t.rules");
    assert_eq!(p.rules[0].source, "rule b {\n  from x\n}");
    assert_eq!(p.rules[1].source, "rule a { from y }");
}

#[test]
fn whitespace_and_newlines_insignificant() {
    let r = rule("rule\n r\n{from\na\nwhere\nx\n==\n1 severity\terror}");
    assert_eq!(r.severity, AlertSeverity::Error);
    let RuleKind::Filter(f) = &r.kind else {
        panic!()
    };
    assert_eq!(sx(f.cond.as_ref().unwrap()), "(== $x 1)");
}

// ------------------------------------------------------------------ literals

#[test]
fn numbers() {
    assert_eq!(rhs_literal("42"), json!(42));
    assert_eq!(rhs_literal("0"), json!(0));
    assert_eq!(rhs_literal("1.5"), json!(1.5));
    assert_eq!(rhs_literal("1e3"), json!(1000));
    assert_eq!(rhs_literal("2.5E-1"), json!(0.25));
    assert_eq!(rhs_literal("1e+2"), json!(100));
    // In an expression `-1.5` is unary minus applied to 1.5.
    assert_eq!(cx("x == -1.5"), "(== $x (neg 1.5))");
}

#[test]
fn booleans_and_null() {
    assert_eq!(rhs_literal("true"), json!(true));
    assert_eq!(rhs_literal("false"), json!(false));
    assert_eq!(
        cx("x == true and y != false"),
        "(and (== $x true) (!= $y false))"
    );
}

#[test]
fn durations_as_expression_values_are_milliseconds() {
    assert_eq!(rhs_literal("250ms"), json!(250));
    assert_eq!(rhs_literal("10s"), json!(10_000));
    assert_eq!(rhs_literal("5m"), json!(300_000));
    assert_eq!(rhs_literal("2h"), json!(7_200_000));
    assert_eq!(rhs_literal("1d"), json!(86_400_000));
    assert_eq!(rhs_literal("1h30m"), json!(5_400_000));
    assert_eq!(rhs_literal("2s500ms"), json!(2_500));
    assert_eq!(rhs_literal("1m0s"), json!(60_000));
    assert_eq!(rhs_literal("1d2h3m4s5ms"), json!(93_784_005));
    assert_eq!(rhs_literal("0s"), json!(0)); // zero is fine in an expression
    assert_eq!(
        cx("latency_ms > 1s + 500ms"),
        "(> $latency_ms (+ 1000 500))"
    );
}

#[test]
fn durations_in_clauses() {
    let cases = [
        ("250ms", 250),
        ("1h30m", 5_400_000),
        ("2s500ms", 2_500),
        ("1m0s", 60_000),
        ("1d", 86_400_000),
    ];
    for (text, ms) in cases {
        let r = rule(&format!(
            "rule r {{ from a absent {text} throttle {text} }}"
        ));
        let RuleKind::Absence(a) = &r.kind else {
            panic!()
        };
        assert_eq!(a.duration, ms, "{text}");
        assert_eq!(r.throttle_ms, Some(ms), "{text}");
        let s = sequence(&format!(
            "rule r {{ sequence within {text} {{ a: x b: y }} }}"
        ));
        assert_eq!(s.within, ms, "{text}");
    }
}

#[test]
fn strings_with_every_escape() {
    assert_eq!(rhs_literal(r#""plain""#), json!("plain"));
    assert_eq!(rhs_literal(r#""""#), json!(""));
    assert_eq!(
        rhs_literal(r#""q\" b\\ n\n t\t""#),
        json!("q\" b\\ n\n t\t")
    );
    assert_eq!(rhs_literal(r#""\u{1F600}""#), json!("\u{1F600}"));
    assert_eq!(rhs_literal(r#""\u{41}\u{e9}\u{0000E9}""#), json!("Aéé"));
    assert_eq!(rhs_literal(r#""\u{10FFFF}""#), json!("\u{10FFFF}"));
    assert_eq!(rhs_literal(r#""\u{0}""#), json!("\u{0}"));
    // Raw non-ASCII and a `#` inside a string are kept.
    assert_eq!(
        rhs_literal(r#""été # not a comment""#),
        json!("été # not a comment")
    );
    // A literal newline inside a string is part of the string.
    assert_eq!(rhs_literal("\"a\nb\""), json!("a\nb"));
}

#[test]
fn escapes_in_list_items_labels_and_messages() {
    let r = rule(
        r#"
list l = ["a\tb", "\u{1F600}"]
rule r {
    description "say \"hi\""
    from a where x in l
    labels { "odd\\key": "v\n" }
    message "line1\nline2 {{ rule }}"
}
"#,
    );
    let RuleKind::Filter(f) = &r.kind else {
        panic!()
    };
    assert_eq!(sx(f.cond.as_ref().unwrap()), "(in $x [\"a\\tb\",\"😀\"])");
    assert_eq!(r.description.as_deref(), Some("say \"hi\""));
    assert_eq!(r.labels, vec![("odd\\key".to_string(), "v\n".to_string())]);
    assert_eq!(r.message.as_deref(), Some("line1\nline2 {{ rule }}"));
}

#[test]
fn list_literal_in_expression() {
    assert_eq!(
        cx(r#"x in ["a", 2, -3, 1.5, true, false, null, 2s]"#),
        r#"(in $x ["a",2,-3,1.5,true,false,null,2000])"#
    );
    assert_eq!(cx("x in []"), "(in $x [])");
}

// ------------------------------------------------------------------ paths

#[test]
fn field_paths() {
    assert_eq!(cx("a == 1"), "(== $a 1)");
    assert_eq!(cx("a.b.c == 1"), "(== $a.b.c 1)");
    assert_eq!(cx("a[0].b == 1"), "(== $a[0].b 1)");
    assert_eq!(cx("a[0][12] == 1"), "(== $a[0][12] 1)");
    assert_eq!(cx("_x1.y_2 == 1"), "(== $_x1.y_2 1)");
    // Keywords as later segments are plain names.
    assert_eq!(cx("a.not.in == 1"), "(== $a.not.in 1)");
}

#[test]
fn exact_path_segments() {
    let CExpr::Cmp(_, l, _) = cond("a[0].`b c`.d == 1") else {
        panic!()
    };
    let CExpr::Field(p) = *l else { panic!() };
    assert_eq!(
        &*p,
        &[
            PathSeg::Field("a".into()),
            PathSeg::Index(0),
            PathSeg::Field("b c".into()),
            PathSeg::Field("d".into()),
        ]
    );
}

#[test]
fn backtick_fields() {
    assert_eq!(cx("`odd key` == 1"), "(== $`odd key` 1)");
    // Backticked first segment of a longer path.
    assert_eq!(
        cx("`odd key`.x[1].`y-z` == 1"),
        "(== $`odd key`.x[1].`y-z` 1)"
    );
    // Keywords and reserved words can be fields when backticked.
    assert_eq!(cx("`not` and `in` == `null`"), "(and $not (== $in $null))");
    assert_eq!(cx("`é` == 1"), "(== $`é` 1)");
}

#[test]
fn in_with_backticked_array_field_and_path() {
    assert_eq!(cx("x in `tags`"), "(in $x $tags)");
    assert_eq!(cx("x in a.tags"), "(in $x $a.tags)");
    assert_eq!(cx("x in a[0]"), "(in $x $a[0])");
    assert_eq!(cx("\"a\" in [\"a\"]"), r#"(in "a" ["a"])"#);
}

/// White space and comments are insignificant between the parts of a path
/// too (rule-language.md 3): `a[ 0 ]`, `geo . country`, across lines. Key
/// names drop it like anywhere else, and a step reference may be spaced.
#[test]
fn whitespace_inside_paths() {
    assert_eq!(cx("a[ 0 ] == 5"), "(== $a[0] 5)");
    assert_eq!(cx("a [0] == 5"), "(== $a[0] 5)");
    assert_eq!(cx(r#"geo . country == "fr""#), r#"(== $geo.country "fr")"#);
    assert_eq!(cx("b .\n `c d` [ 1 ]\t. e == 2"), "(== $b.`c d`[1].e 2)");
    assert_eq!(cx("a # comment\n .b == 1"), "(== $a.b 1)");
    // Decimal numbers are single tokens; a spaced path is still a path.
    assert_eq!(cx("a . b == 1.5"), "(== $a.b 1.5)");
    assert_eq!(cx("x in a . tags"), "(in $x $a.tags)");
    let r = rule("rule r {\n    key geo . country, a [ 0 ]\n    from a\n}\n");
    let names: Vec<_> = r.key.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(names, ["geo.country", "a[0]"]);
    assert_eq!(sx(&r.key[0].expr), "$geo.country");
    let s = sequence(
        "rule s {\n    sequence within 1m {\n        f: a\n        o: b where ip == f . ip\n    }\n}\n",
    );
    assert_eq!(sx(s.steps[1].cond.as_ref().unwrap()), "(== $ip @0.ip)");
}

/// Only a bare name right after `in` is a list name (rule-language.md 3); a
/// parenthesised one is an ordinary expression: a field (8, "any expression
/// giving an array"), even when a list of that name exists, since lists are
/// resolved only right after `in`. A let in parentheses is still the let.
#[test]
fn in_with_parenthesised_name_is_a_field() {
    assert_eq!(cx("1 in (arr)"), "(in 1 $arr)");
    assert_eq!(cx("1 not in ( arr )"), "(notin 1 $arr)");
    assert_eq!(cx("1 in ((arr))"), "(in 1 $arr)");
    // With a list of that name it is still the field, with a warning.
    let l = load("list arr = [1]\nrule r {\n    from a where 1 in (arr)\n}\n");
    let text = l.render();
    assert!(
        text.contains("warning: `(arr)` is read as the event field `arr`, not the list"),
        "{text}"
    );
    assert!(!text.contains("error"), "{text}");
    match &l.program.rules[0].kind {
        RuleKind::Filter(f) => assert_eq!(sx(f.cond.as_ref().expect("cond")), "(in 1 $arr)"),
        other => panic!("expected a filter rule, got {other:?}"),
    }
    assert_eq!(cx_with("list arr = [1]", "1 in arr"), "(in 1 [1])");
    assert_eq!(cx_with("let f = tags", "1 in (f)"), "(in 1 $tags)");
}

// ------------------------------------------------------------------ operators and precedence

#[test]
fn every_comparison_operator() {
    assert_eq!(cx("a == b"), "(== $a $b)");
    assert_eq!(cx("a != b"), "(!= $a $b)");
    assert_eq!(cx("a < b"), "(< $a $b)");
    assert_eq!(cx("a <= b"), "(<= $a $b)");
    assert_eq!(cx("a > b"), "(> $a $b)");
    assert_eq!(cx("a >= b"), "(>= $a $b)");
    assert_eq!(cx("a in [1]"), "(in $a [1])");
    assert_eq!(cx("a not in [1]"), "(notin $a [1])");
    assert_eq!(cx(r#"a matches "^x.*$""#), "(matches $a /^x.*$/)");
    assert_eq!(cx(r#"a contains "x""#), r#"(contains $a "x")"#);
    assert_eq!(cx(r#"a starts_with "x""#), r#"(starts_with $a "x")"#);
    assert_eq!(cx(r#"a ends_with "x""#), r#"(ends_with $a "x")"#);
}

#[test]
fn comparison_operators_without_spaces() {
    assert_eq!(cx("a==1"), "(== $a 1)");
    assert_eq!(cx("a<=b"), "(<= $a $b)");
    assert_eq!(cx("a>-1"), "(> $a (neg 1))");
}

#[test]
fn every_arithmetic_operator() {
    assert_eq!(cx("a + b == 0"), "(== (+ $a $b) 0)");
    assert_eq!(cx("a - b == 0"), "(== (- $a $b) 0)");
    assert_eq!(cx("a * b == 0"), "(== (* $a $b) 0)");
    assert_eq!(cx("a / b == 0"), "(== (/ $a $b) 0)");
    assert_eq!(cx("a % b == 0"), "(== (% $a $b) 0)");
    assert_eq!(cx("-a == 0"), "(== (neg $a) 0)");
    assert_eq!(cx("- - a == 0"), "(== (neg (neg $a)) 0)");
    assert_eq!(cx("--a == 0"), "(== (neg (neg $a)) 0)");
}

#[test]
fn precedence_or_and_not() {
    // or < and
    assert_eq!(cx("a or b and c"), "(or $a (and $b $c))");
    assert_eq!(cx("a and b or c"), "(or (and $a $b) $c)");
    // and < not
    assert_eq!(cx("not a and b"), "(and (not $a) $b)");
    assert_eq!(
        cx("a and not b or not c"),
        "(or (and $a (not $b)) (not $c))"
    );
    // not < comparison
    assert_eq!(cx("not a == 1"), "(not (== $a 1))");
    assert_eq!(cx("not a in [1]"), "(not (in $a [1]))");
    assert_eq!(cx("not not a"), "(not (not $a))");
    // left associativity
    assert_eq!(cx("a or b or c"), "(or (or $a $b) $c)");
    assert_eq!(cx("a and b and c"), "(and (and $a $b) $c)");
    // parentheses
    assert_eq!(cx("(a or b) and c"), "(and (or $a $b) $c)");
    assert_eq!(cx("not (a and b)"), "(not (and $a $b))");
}

#[test]
fn precedence_comparison_sum_product_unary() {
    // comparison < + -
    assert_eq!(cx("a + 1 > b - 2"), "(> (+ $a 1) (- $b 2))");
    assert_eq!(cx("a in l + 1"), "(in $a (+ $l 1))");
    // + - < * / %
    assert_eq!(cx("a == 1 + 2 * 3"), "(== $a (+ 1 (* 2 3)))");
    assert_eq!(cx("a == 1 * 2 + 3"), "(== $a (+ (* 1 2) 3))");
    assert_eq!(cx("a == 1 - 2 % 3"), "(== $a (- 1 (% 2 3)))");
    // * / % < unary -
    assert_eq!(cx("a == -b * c"), "(== $a (* (neg $b) $c))");
    assert_eq!(cx("a == b * -c"), "(== $a (* $b (neg $c)))");
    // left associativity of + - and * / %
    assert_eq!(cx("a == b - c - d"), "(== $a (- (- $b $c) $d))");
    assert_eq!(cx("a == b - c + d"), "(== $a (+ (- $b $c) $d))");
    assert_eq!(cx("a == b / c * d % e"), "(== $a (% (* (/ $b $c) $d) $e))");
    // parentheses override
    assert_eq!(cx("a == (1 + 2) * 3"), "(== $a (* (+ 1 2) 3))");
    assert_eq!(cx("a == -(b + c)"), "(== $a (neg (+ $b $c)))");
    assert_eq!(cx("((a)) == ((1))"), "(== $a 1)");
}

#[test]
fn precedence_full_ladder() {
    assert_eq!(
        cx("not a + b * -c >= d or e and f != g % 2"),
        "(or (not (>= (+ $a (* $b (neg $c))) $d)) (and $e (!= $f (% $g 2))))"
    );
}

#[test]
fn operator_words_need_word_boundaries() {
    // `android` is a field, not `and` + `roid`; `order` is not `or` + `der`.
    assert_eq!(cx("android == order"), "(== $android $order)");
    assert_eq!(cx("notice and inbox"), "(and $notice $inbox)");
    assert_eq!(cx("nullable == null_x"), "(== $nullable $null_x)");
}

#[test]
fn null_comparisons() {
    assert_eq!(cx("x == null"), "(isnull $x)");
    assert_eq!(cx("x != null"), "(notnull $x)");
    assert_eq!(cx("null == x"), "(isnull $x)");
    assert_eq!(cx("null != a.b"), "(notnull $a.b)");
    assert_eq!(
        cx("x == null or y != null"),
        "(or (isnull $x) (notnull $y))"
    );
    // `null` in other comparisons is an ordinary literal.
    assert_eq!(cx("x < null"), "(< $x null)");
}

#[test]
fn not_in() {
    assert_eq!(
        cx_with("list admins = [\"root\"]", "user not in admins"),
        r#"(notin $user ["root"])"#
    );
    assert_eq!(cx("user not in [1, 2]"), "(notin $user [1,2])");
    assert_eq!(cx("user not in `tags`"), "(notin $user $tags)");
    assert_eq!(
        cx_with("list admins = [\"root\"]", "not user in admins"),
        r#"(not (in $user ["root"]))"#
    );
}

#[test]
fn matches_compiles_the_regex() {
    let CExpr::Matches(a, re) = cond(r#"path matches "^/api/v[0-9]+/""#) else {
        panic!()
    };
    assert_eq!(sx(&a), "$path");
    assert_eq!(re.as_str(), "^/api/v[0-9]+/");
    assert!(re.is_match("/api/v2/users"));
    assert!(!re.is_match("/web/api/v2/"));
    // The string escapes are decoded before the regex is compiled.
    let CExpr::Matches(_, re) = cond(r#"s matches "a\\.b\tc""#) else {
        panic!()
    };
    assert_eq!(re.as_str(), "a\\.b\tc");
}

// ------------------------------------------------------------------ functions

#[test]
fn functions() {
    assert_eq!(cx("lower(a) == upper(b)"), "(== (lower $a) (upper $b))");
    assert_eq!(cx("len(a) > 0"), "(> (len $a) 0)");
    assert_eq!(cx("number(a) == abs(b)"), "(== (number $a) (abs $b))");
    assert_eq!(
        cx("string(a.b[0]) == \"1\""),
        r#"(== (string $a.b[0]) "1")"#
    );
    assert_eq!(
        cx("lower( upper( a ) ) == \"x\""),
        r#"(== (lower (upper $a)) "x")"#
    );
    assert_eq!(cx("abs(a - b) > 1"), "(> (abs (- $a $b)) 1)");
}

#[test]
fn exists_takes_a_path() {
    assert_eq!(cx("exists(a)"), "(exists $a)");
    assert_eq!(cx("exists(a.b[2])"), "(exists $a.b[2])");
    assert_eq!(cx("exists(`odd key`.x)"), "(exists $`odd key`.x)");
    assert_eq!(
        cx("not exists(a) or exists(b)"),
        "(or (not (exists $a)) (exists $b))"
    );
    // A let name inside exists() is a let, not a field: the let's body must then be a path.
    assert_eq!(cx_with("let f = x.y", "exists(f)"), "(exists $x.y)");
}

// ------------------------------------------------------------------ rule kinds and clauses

#[test]
fn filter_rule_with_defaults() {
    let r = rule("rule root_login { from auth where user == \"root\" }");
    assert_eq!(r.name, "root_login");
    assert_eq!(r.kind_name(), "filter");
    assert_eq!(r.severity, AlertSeverity::Warning); // the default
    assert!(r.key.is_empty());
    assert!(r.description.is_none());
    assert!(r.throttle_ms.is_none());
    assert!(r.labels.is_empty());
    assert!(r.notify.is_empty());
    assert!(r.message.is_none());
    assert_eq!(r.streams(), vec![Some("auth")]);
}

#[test]
fn filter_without_where_and_any_stream() {
    let r = rule("rule r { from * }");
    let RuleKind::Filter(f) = &r.kind else {
        panic!()
    };
    assert_eq!(f.stream, None);
    assert!(f.cond.is_none());
    assert_eq!(r.streams(), vec![None]);
}

#[test]
fn every_severity() {
    for (name, sev) in [
        ("info", AlertSeverity::Info),
        ("warning", AlertSeverity::Warning),
        ("error", AlertSeverity::Error),
        ("critical", AlertSeverity::Critical),
    ] {
        let r = rule(&format!("rule r {{ severity {name} from a }}"));
        assert_eq!(r.severity, sev);
        assert_eq!(r.severity.as_str(), name);
    }
}

#[test]
fn all_common_clauses_in_any_order() {
    let r = rule(
        r#"
rule brute {
    message     "{{ key.user }} from {{ event.ip }}"
    notify      ops, security , pager
    labels      { team: "identity", "two words": "x", tier: "1", }
    throttle    10m
    from        auth where outcome == "failure"
    key         user
    severity    critical
    description "Failed logins"
}
"#,
    );
    assert_eq!(r.name, "brute");
    assert_eq!(r.severity, AlertSeverity::Critical);
    assert_eq!(r.description.as_deref(), Some("Failed logins"));
    assert_eq!(r.throttle_ms, Some(600_000));
    assert_eq!(
        r.labels,
        vec![
            ("team".to_string(), "identity".to_string()),
            ("two words".to_string(), "x".to_string()),
            ("tier".to_string(), "1".to_string()),
        ]
    );
    assert_eq!(r.notify, ["ops", "security", "pager"]);
    assert_eq!(
        r.message.as_deref(),
        Some("{{ key.user }} from {{ event.ip }}")
    );
    assert_eq!(r.key.len(), 1);
    assert_eq!(r.key[0].name, "user");
    assert_eq!(sx(&r.key[0].expr), "$user");
    assert_eq!(r.kind_name(), "filter");
}

#[test]
fn labels_without_commas_and_empty() {
    let r = rule(r#"rule r { from a labels { a: "1" b: "2" } }"#);
    assert_eq!(
        r.labels,
        vec![("a".into(), "1".into()), ("b".into(), "2".into())]
    );
    let r = rule("rule r { from a labels { } }");
    assert!(r.labels.is_empty());
}

#[test]
fn key_names_are_canonical() {
    let r = rule(
        r#"
let k = lower(user)
rule r {
    key user, lower( host ), geo.country, a[0].b, `odd key`,
        string( n + 1 ) # comment between tokens
        , lower( "A  B" ), k
    from a
}
"#,
    );
    let names: Vec<_> = r.key.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "user",
            "lower(host)",
            "geo.country",
            "a[0].b",
            "`odd key`",
            "string(n+1)",
            "lower(\"A  B\")",
            "k",
        ]
    );
    let exprs: Vec<_> = r.key.iter().map(|k| sx(&k.expr)).collect();
    assert_eq!(
        exprs,
        [
            "$user",
            "(lower $host)",
            "$geo.country",
            "$a[0].b",
            "$`odd key`",
            "(string (+ $n 1))",
            "(lower \"A  B\")",
            "(lower $user)",
        ]
    );
}

#[test]
fn threshold_every_window_kind() {
    let cases = [
        ("sliding 1m", Window::Sliding { size: 60_000 }),
        (
            "tumbling 1m",
            Window::Hopping {
                size: 60_000,
                every: 60_000,
            },
        ),
        (
            "hopping 5m every 1m",
            Window::Hopping {
                size: 300_000,
                every: 60_000,
            },
        ),
        (
            "hopping 1s every 1m",
            Window::Hopping {
                size: 1_000,
                every: 60_000,
            },
        ),
        ("session 30s", Window::Session { gap: 30_000 }),
        ("sliding 1h30m", Window::Sliding { size: 5_400_000 }),
    ];
    for (spec, window) in cases {
        let r = rule(&format!(
            "rule r {{ from http window {spec} when count() > 1 }}"
        ));
        assert_eq!(r.kind_name(), "threshold", "{spec}");
        let RuleKind::Threshold(t) = &r.kind else {
            panic!()
        };
        assert_eq!(t.window, window, "{spec}");
        assert_eq!(t.from.stream.as_deref(), Some("http"));
    }
}

#[test]
fn threshold_aggregates_and_canonical_names() {
    let t = threshold(
        r#"
rule r {
    key service
    from http where status >= 500
    window sliding 1m
    when count( ) > 100 and avg( latency_ms * 2 ) >= 250
      or count() < 5 or p99(latency_ms) > 2s or count(user) > 1
      or distinct(`user id`) >= 3 or sum(bytes)>0 or min(v) < max(v)
      or p50(v) > p90(v) or p95(v) == null or first(v) != last(v)
      or avg(latency_ms*2) > 1  # same aggregate as above
      or max( "a b" ) == 1      # string literal kept verbatim
}
"#,
    );
    let names: Vec<_> = t.aggs.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "count()",
            "avg(latency_ms*2)",
            "p99(latency_ms)",
            "count(user)",
            "distinct(`user id`)",
            "sum(bytes)",
            "min(v)",
            "max(v)",
            "p50(v)",
            "p90(v)",
            "p95(v)",
            "first(v)",
            "last(v)",
            "max(\"a b\")",
        ]
    );
    let funcs: Vec<_> = t.aggs.iter().map(|a| a.func).collect();
    assert_eq!(
        funcs,
        [
            AggFunc::Count,
            AggFunc::Avg,
            AggFunc::Percentile(99),
            AggFunc::Count,
            AggFunc::Distinct,
            AggFunc::Sum,
            AggFunc::Min,
            AggFunc::Max,
            AggFunc::Percentile(50),
            AggFunc::Percentile(90),
            AggFunc::Percentile(95),
            AggFunc::First,
            AggFunc::Last,
            AggFunc::Max,
        ]
    );
    let args: Vec<_> = t
        .aggs
        .iter()
        .map(|a| a.arg.as_ref().map(sx).unwrap_or_default())
        .collect();
    assert_eq!(
        args,
        [
            "",
            "(* $latency_ms 2)",
            "$latency_ms",
            "$user",
            "$`user id`",
            "$bytes",
            "$v",
            "$v",
            "$v",
            "$v",
            "$v",
            "$v",
            "$v",
            "\"a b\"",
        ]
    );
    assert_eq!(
        sx(&t.when),
        "(or (or (or (or (or (or (or (or (or (or (or \
         (and (> #0 100) (>= #1 250)) \
         (< #0 5)) (> #2 2000)) (> #3 1)) (>= #4 3)) (> #5 0)) (< #6 #7)) \
         (> #8 #9)) (isnull #10)) (!= #11 #12)) (> #1 1)) (== #13 1))"
    );
    assert_eq!(sx(t.from.cond.as_ref().unwrap()), "(>= $status 500)");
}

#[test]
fn when_combines_aggregates_literals_and_durations() {
    let t = threshold("rule r { from a window session 1m when count() > 10 and 2 * sum(v) >= 1s }");
    assert_eq!(sx(&t.when), "(and (> #0 10) (>= (* 2 #1) 1000))");
    assert_eq!(t.aggs[0].name, "count()");
    assert_eq!(t.aggs[1].name, "sum(v)");
}

#[test]
fn aggregate_argument_may_use_functions_and_lets() {
    let t = threshold(
        "let ms = latency_ms\nrule r { from a window sliding 1m when distinct(lower(user)) > 1 and max(ms) > 0 }",
    );
    assert_eq!(t.aggs[0].name, "distinct(lower(user))");
    assert_eq!(sx(t.aggs[0].arg.as_ref().unwrap()), "(lower $user)");
    // The canonical name is the text as written (the let name), the argument its body.
    assert_eq!(t.aggs[1].name, "max(ms)");
    assert_eq!(sx(t.aggs[1].arg.as_ref().unwrap()), "$latency_ms");
}

#[test]
fn absence_rule() {
    let r = rule(
        "rule heartbeat_lost {\n severity critical\n key host\n from heartbeat\n absent 2m\n notify ops\n}",
    );
    assert_eq!(r.kind_name(), "absence");
    let RuleKind::Absence(a) = &r.kind else {
        panic!()
    };
    assert_eq!(a.duration, 120_000);
    assert_eq!(a.from.stream.as_deref(), Some("heartbeat"));
    assert!(a.from.cond.is_none());
    assert_eq!(r.key[0].name, "host");
    assert_eq!(r.notify, ["ops"]);
    assert_eq!(r.severity, AlertSeverity::Critical);
}

// ------------------------------------------------------------------ sequences

#[test]
fn sequence_rule_spec_example() {
    let r = rule(
        r#"
let failed = outcome == "failure"
rule brute_force_then_success {
    description "Three or more failed logins, then a success, for one user"
    severity    critical
    key         user
    sequence within 5m {
        fail: auth where failed {3,}
        ok:   auth where outcome == "success"
    }
    throttle    10m
    labels      { team: "identity" }
    notify      ops, security
    message     "{{ key.user }} logged in from {{ ok.ip }} after {{ fail | length }} failures"
}
"#,
    );
    assert_eq!(r.kind_name(), "sequence");
    let RuleKind::Sequence(s) = &r.kind else {
        panic!()
    };
    assert_eq!(s.within, 300_000);
    assert_eq!(s.steps.len(), 2);
    let f = &s.steps[0];
    assert_eq!(
        (f.name.as_str(), f.negated, f.stream.as_deref(), f.min),
        ("fail", false, Some("auth"), Some(3))
    );
    assert_eq!(sx(f.cond.as_ref().unwrap()), r#"(== $outcome "failure")"#);
    let o = &s.steps[1];
    assert_eq!(
        (o.name.as_str(), o.negated, o.stream.as_deref(), o.min),
        ("ok", false, Some("auth"), None)
    );
    assert_eq!(sx(o.cond.as_ref().unwrap()), r#"(== $outcome "success")"#);
    assert_eq!(r.streams(), vec![Some("auth"), Some("auth")]);
    assert_eq!(s.positive().collect::<Vec<_>>(), [0, 1]);
}

#[test]
fn sequence_negated_steps_and_quantifiers() {
    let s = sequence(
        r#"
rule s {
    sequence within 10m {
        first: login {2,}
        not out: logout where user == first.user
        mid: sudo where count(first) >= 2
        not stop: *
    }
}
"#,
    );
    let summary: Vec<_> = s
        .steps
        .iter()
        .map(|st| (st.name.as_str(), st.negated, st.stream.as_deref(), st.min))
        .collect();
    assert_eq!(
        summary,
        [
            ("first", false, Some("login"), Some(2)),
            ("out", true, Some("logout"), None),
            ("mid", false, Some("sudo"), None),
            ("stop", true, None, None),
        ]
    );
    assert_eq!(sx(s.steps[1].cond.as_ref().unwrap()), "(== $user @0.user)");
    assert_eq!(sx(s.steps[2].cond.as_ref().unwrap()), "(>= (count @0) 2)");
    assert!(s.steps[3].cond.is_none());
    assert_eq!(s.positive().collect::<Vec<_>>(), [0, 2]);
}

#[test]
fn quantifier_forms() {
    let s = sequence("rule r { sequence within 1m { a: x + b: y c: z {1,} d: w e: v {25,} } }");
    let mins: Vec<_> = s.steps.iter().map(|st| st.min).collect();
    assert_eq!(mins, [Some(1), None, Some(1), None, Some(25)]);
    // Spaces inside `{n,}` are allowed.
    let s = sequence("rule r { sequence within 1m { a: x { 3 , } b: y } }");
    assert_eq!(s.steps[0].min, Some(3));
}

#[test]
fn plus_after_where_before_next_step_is_the_quantifier() {
    // `+` followed by `NAME :`
    let s = sequence(
        "rule r { sequence within 1m {\n fails: auth where outcome == \"failure\" +\n ok: auth\n} }",
    );
    assert_eq!(s.steps[0].min, Some(1));
    assert_eq!(
        sx(s.steps[0].cond.as_ref().unwrap()),
        r#"(== $outcome "failure")"#
    );
    // `+` followed by `not`
    let s = sequence(
        "rule r { sequence within 1m {\n a: x\n b: y where v > 1 +\n not c: z\n d: w\n} }",
    );
    assert_eq!(s.steps[1].min, Some(1));
    assert_eq!(sx(s.steps[1].cond.as_ref().unwrap()), "(> $v 1)");
    // `+` followed by `}`
    let s = sequence("rule r { sequence within 1m {\n a: x\n b: y where v > a + b +\n} }");
    assert_eq!(s.steps[1].min, Some(1));
    assert_eq!(sx(s.steps[1].cond.as_ref().unwrap()), "(> $v (+ $a $b))");
    // A comment between the `+` and the next step does not change that.
    let s = sequence(
        "rule r { sequence within 1m {\n a: x where v > 1 + # one or more\n # more comment\n b: y\n} }",
    );
    assert_eq!(s.steps[0].min, Some(1));
    assert_eq!(sx(s.steps[0].cond.as_ref().unwrap()), "(> $v 1)");
    // `+` with no space before the next step name
    let s = sequence("rule r { sequence within 1m { a: x where n == 1 +b: y } }");
    assert_eq!(s.steps[0].min, Some(1));
    assert_eq!(sx(s.steps[0].cond.as_ref().unwrap()), "(== $n 1)");
}

#[test]
fn plus_inside_a_condition_is_addition() {
    // `(a + b)` at the end of a condition: addition, no quantifier.
    let s = sequence(
        "rule r { sequence within 1m {\n a: x where v == (a + b)\n b: y where v == a + c\n} }",
    );
    assert_eq!(s.steps[0].min, None);
    assert_eq!(sx(s.steps[0].cond.as_ref().unwrap()), "(== $v (+ $a $b))");
    assert_eq!(s.steps[1].min, None);
    assert_eq!(sx(s.steps[1].cond.as_ref().unwrap()), "(== $v (+ $a $c))");
    // An addition followed by the quantifier.
    let s = sequence("rule r { sequence within 1m {\n a: x where v == a + b +\n b: y\n} }");
    assert_eq!(s.steps[0].min, Some(1));
    assert_eq!(sx(s.steps[0].cond.as_ref().unwrap()), "(== $v (+ $a $b))");
    // `+` followed by a field named like `not_x` or a path (no `:`) is addition.
    let s = sequence(
        "rule r { sequence within 1m {\n a: x where v == b + not_x\n b: y where v == a + cc.d\n} }",
    );
    assert_eq!(
        sx(s.steps[0].cond.as_ref().unwrap()),
        "(== $v (+ $b $not_x))"
    );
    assert_eq!(
        sx(s.steps[1].cond.as_ref().unwrap()),
        "(== $v (+ $a $cc.d))"
    );
    assert_eq!(s.steps[0].min, None);
    assert_eq!(s.steps[1].min, None);
}

#[test]
fn step_references_and_shadowing() {
    let s = sequence(
        r#"
let ok = v > 1
list ok_list = ["p"]
rule s {
    sequence within 1m30s {
        first: x where geo.country == "fr" and `ok`
        ok: y where ok and first.v < v and count(first) == 1 and s in ok_list
        last: z where ok.a[0] == first.b.c and count(ok) > 0 and `first`.v == null and first == 1
    }
}
"#,
    );
    assert_eq!(s.within, 90_000);
    assert_eq!(
        sx(s.steps[0].cond.as_ref().unwrap()),
        r#"(and (== $geo.country "fr") $ok)"#
    );
    // Bare `ok` in step `ok` is the let (only `ok.path` / `count(ok)` name the step).
    assert_eq!(
        sx(s.steps[1].cond.as_ref().unwrap()),
        r#"(and (and (and (> $v 1) (< @0.v $v)) (== (count @0) 1)) (in $s ["p"]))"#
    );
    // Backticked `first` is a field; bare `first` without a path is a field.
    assert_eq!(
        sx(s.steps[2].cond.as_ref().unwrap()),
        "(and (and (and (== @1.a[0] @0.b.c) (> (count @1) 0)) (isnull $first.v)) (== $first 1))"
    );
}

#[test]
fn sequence_over_any_stream_and_trailing_negation() {
    let r = rule(
        "rule order_not_shipped {\n key order_id\n sequence within 24h {\n created: order where state == \"created\"\n not shipped: shipment\n }\n}",
    );
    let RuleKind::Sequence(s) = &r.kind else {
        panic!()
    };
    assert_eq!(s.within, 86_400_000);
    assert!(s.steps[1].negated);
    assert_eq!(s.steps[1].stream.as_deref(), Some("shipment"));
    assert_eq!(r.severity, AlertSeverity::Warning);
    assert_eq!(r.key[0].name, "order_id");
}

#[test]
fn many_rules_many_files_rule_order() {
    let l = lang::load_texts(
        vec![
            ("10.rules".into(), "rule a { from x }\nrule b { from y absent 1s }".into()),
            (
                "20.rules".into(),
                "rule c { from z window sliding 1s when count() > 0 }\nrule d { sequence within 1s { p: x q: y } }"
                    .into(),
            ),
        ],
        &Options::default(),
    );
    assert!(l.diagnostics.is_empty(), "{}", l.render());
    let got: Vec<_> = l
        .program
        .rules
        .iter()
        .map(|r| (r.name.as_str(), r.kind_name(), r.file.as_str(), r.line))
        .collect();
    assert_eq!(
        got,
        [
            ("a", "filter", "10.rules", 1),
            ("b", "absence", "10.rules", 2),
            ("c", "threshold", "20.rules", 1),
            ("d", "sequence", "20.rules", 2),
        ]
    );
}

#[test]
fn keywords_as_rule_step_and_stream_names() {
    // Clause words are not reserved outside their position.
    let r = rule("rule window { key from sequence within 1m { key: when not absent: from } }");
    assert_eq!(r.name, "window");
    assert_eq!(r.key[0].name, "from");
    let RuleKind::Sequence(s) = &r.kind else {
        panic!()
    };
    assert_eq!(s.steps[0].name, "key");
    assert_eq!(s.steps[0].stream.as_deref(), Some("when"));
    assert_eq!(s.steps[1].name, "absent");
    assert!(s.steps[1].negated);
}

// ------------------------------------------------------------------ shipped examples

#[test]
fn example_rules_directory_loads_without_diagnostics() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let l = lang::load(&dir, &Options::default()).expect("rules/ is readable");
    assert!(l.diagnostics.is_empty(), "{}", l.render());
    let got: Vec<_> = l
        .program
        .rules
        .iter()
        .map(|r| {
            let file = std::path::Path::new(&r.file)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (file, r.name.as_str(), r.kind_name())
        })
        .collect();
    let want = [
        ("10-auth.rules", "root_login", "filter"),
        ("10-auth.rules", "brute_force_then_success", "sequence"),
        ("10-auth.rules", "password_spray", "threshold"),
        ("20-http.rules", "error_burst", "threshold"),
        ("20-http.rules", "slow_endpoint", "threshold"),
        ("20-http.rules", "scanner_suspected", "threshold"),
        ("20-http.rules", "heavy_session", "threshold"),
        ("30-heartbeat.rules", "heartbeat_lost", "absence"),
        ("30-heartbeat.rules", "staging_heartbeat_lost", "absence"),
        ("40-orders.rules", "order_paid_not_shipped", "sequence"),
        ("40-orders.rules", "declines_then_capture", "sequence"),
    ];
    let want: Vec<_> = want
        .iter()
        .map(|(f, n, k)| (f.to_string(), *n, *k))
        .collect();
    assert_eq!(got, want);
    // Every window kind is shown.
    let windows: Vec<_> = l
        .program
        .rules
        .iter()
        .filter_map(|r| match &r.kind {
            RuleKind::Threshold(t) => Some(t.window),
            _ => None,
        })
        .collect();
    assert_eq!(
        windows,
        [
            Window::Sliding { size: 600_000 },
            Window::Sliding { size: 60_000 },
            Window::Hopping {
                size: 300_000,
                every: 300_000
            },
            Window::Hopping {
                size: 600_000,
                every: 60_000
            },
            Window::Session { gap: 1_800_000 },
        ]
    );
    // The order rule has a negation between steps and a trailing negation.
    let RuleKind::Sequence(s) = &l.program.rules[9].kind else {
        panic!()
    };
    let shape: Vec<_> = s
        .steps
        .iter()
        .map(|st| (st.name.as_str(), st.negated, st.min))
        .collect();
    assert_eq!(
        shape,
        [
            ("created", false, None),
            ("cancelled", true, None),
            ("paid", false, None),
            ("shipped", true, None),
        ]
    );
    assert_eq!(s.within, 86_400_000);
    let RuleKind::Sequence(s) = &l.program.rules[10].kind else {
        panic!()
    };
    assert_eq!(s.steps[0].min, Some(1));
}
